"""Console pattern matching throughput: how fast hil's Console finds a pattern at the end of a long stream.

A unix socket stands in for QEMU's serial chardev: a writer thread sends N MB of kernel-log-like lines with
ANSI colour escapes sprinkled in (and the occasional cursor query busybox sends), then a marker line. The
Console (pexpect fdspawn + ANSI stripper + transcript/tail recording), with the reference guest's crash
patterns watched as in a real run, waits for the marker. Prints MB/s per size (target >= 200 MB/s, about
the same for every size, i.e. linear), and the same stream through each stage alone (socket read, UTF-8
decode, ANSI strip, regex search of each chunk) so a shortfall can be located. `--profile` runs the
smallest size under pyinstrument and prints where the time goes.
"""

from __future__ import annotations

import argparse
import codecs
import multiprocessing
import re
import socket
import tempfile
import time
from pathlib import Path

from target import print_target  # bench/target.py (scripts run from bench/ on sys.path)

from hil.guest.ansi import AnsiStripper
from hil.guest.console import Console
from hil.guest.profiles.reference import ReferenceProfile

MB = 1_000_000
CHUNK = 65536
MARKER = "HIL-BENCH-END-MARKER"
TARGET_MB_S = 200.0


def synthetic_stream(size: int) -> bytes:
    """Kernel-log-like lines, every fifth coloured, every 50th with a cursor query; the marker at the end."""
    lines = []
    total = 0
    number = 0
    while total < size:
        stamp = f"[{number / 1000:12.6f}]"
        text = f"{stamp} pci 0000:00:{number % 32:02x}.0: [8086:10d3] type 00 class 0x020000 bar {number}"
        if number % 5 == 0:
            text = f"\x1b[1;32m{stamp}\x1b[0m driver: \x1b[33mprobe\x1b[0m of device {number} ok"
        if number % 50 == 0:
            text += "\x1b[6n"
        line = text + "\r\n"
        lines.append(line)
        total += len(line)
        number += 1
    return ("".join(lines) + MARKER + "\r\n").encode()


def serve(path: Path, payload: bytes) -> multiprocessing.process.BaseProcess:
    """Accept one connection on `path` and send `payload` in serial-chardev-sized pieces, from another
    process as QEMU would (a thread here would take the reader's GIL)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def run() -> None:
        connection, _ = server.accept()
        with connection:
            view = memoryview(payload)
            for start in range(0, len(view), CHUNK):
                connection.sendall(view[start : start + CHUNK])
            time.sleep(1)  # keep the connection open until the reader is done matching

    writer = multiprocessing.get_context("fork").Process(target=run, daemon=True)
    writer.start()
    server.close()  # the writer has its own copy
    return writer


def console_seconds(payload: bytes, timeout: float, window: int | None = None) -> float | None:
    """Seconds from connecting until the marker matched, through hil's Console; None past `timeout`.
    `window` bounds pexpect's search window (what hil ships: None, the whole buffer each read)."""
    with tempfile.TemporaryDirectory(prefix="hil-bench-") as scratch:
        path = Path(scratch) / "serial.sock"
        serve(path, payload)
        console = Console(path, Path(scratch) / "console.txt", crash_patterns=ReferenceProfile.crash_patterns)
        started = time.perf_counter()
        console.connect()
        if window:
            console._spawn.searchwindowsize = window  # type: ignore[union-attr]  # the experiment, not hil's setting
        try:
            console.expect([re.compile(rf"^{MARKER}$", re.MULTILINE)], timeout)
        except TimeoutError:
            return None
        finally:
            console.close()
        return time.perf_counter() - started


def stage_rates(payload: bytes) -> dict[str, float]:
    """MB/s of each stage of the matching path on its own, chunk by chunk as the console sees them."""
    chunks = [payload[i : i + CHUNK] for i in range(0, len(payload), CHUNK)]
    rates = {}
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    started = time.perf_counter()
    texts = [decoder.decode(chunk) for chunk in chunks]
    rates["utf-8 decode"] = time.perf_counter() - started
    stripper = AnsiStripper()
    started = time.perf_counter()
    plain = [stripper.feed(text) for text in texts]
    rates["ANSI strip"] = time.perf_counter() - started
    patterns = [re.compile(p, re.MULTILINE) for p in (*ReferenceProfile.crash_patterns, rf"^{MARKER}$")]
    started = time.perf_counter()
    for text in plain:  # each chunk searched once: what a bounded search window would cost
        for pattern in patterns:
            pattern.search(text)
    rates["regex per chunk"] = time.perf_counter() - started
    size = len(payload) / MB
    return {stage: size / seconds for stage, seconds in rates.items()}


def socket_rate(payload: bytes) -> float:
    with tempfile.TemporaryDirectory(prefix="hil-bench-") as scratch:
        path = Path(scratch) / "serial.sock"
        serve(path, payload)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
        received = 0
        started = time.perf_counter()
        while received < len(payload):
            received += len(client.recv(CHUNK))
        seconds = time.perf_counter() - started
        client.close()
    return len(payload) / MB / seconds


def profile(payload: bytes, timeout: float, window: int | None) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    console_seconds(payload, timeout, window)
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,25,50", help="stream sizes in MB, comma separated")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on one size after this many seconds")
    parser.add_argument("--profile", action="store_true", help="profile the smallest size with pyinstrument")
    parser.add_argument(
        "--search-window",
        type=int,
        metavar="CHARS",
        help="experiment: bound pexpect's search window (hil searches the whole buffer)",
    )
    args = parser.parse_args()
    sizes = [float(size) for size in args.sizes.split(",")]
    print(f"{'size':>8} {'seconds':>9} {'MB/s':>9}")
    rates = []
    for size in sizes:
        payload = synthetic_stream(int(size * MB))
        seconds = console_seconds(payload, args.timeout, args.search_window)
        if seconds is None:
            print(f"{size:6.0f}MB {'>' + str(int(args.timeout)):>9} {'-':>9}  (gave up)", flush=True)
            continue
        rates.append(len(payload) / MB / seconds)
        print(f"{size:6.0f}MB {seconds:9.2f} {rates[-1]:9.1f}", flush=True)
    payload = synthetic_stream(int(sizes[0] * MB))
    print(f"stages alone on {sizes[0]:.0f} MB: socket read {socket_rate(payload):.0f} MB/s, " + ", ".join(
        f"{stage} {rate:.0f} MB/s" for stage, rate in stage_rates(payload).items()))  # fmt: skip
    if args.profile:
        profile(payload, args.timeout, args.search_window)
    linear = rates[-1] / rates[0] if len(rates) == len(sizes) else 0.0
    slowest = min(rates) if len(rates) == len(sizes) else 0.0
    print_target("console_throughput", f"slowest {slowest:.1f} MB/s, largest/smallest size rate {linear:.2f}",
                 f">= {TARGET_MB_S:.0f} MB/s at every size, rate 0.8-1.25 (linear)",
                 slowest >= TARGET_MB_S and 0.8 <= linear <= 1.25)  # fmt: skip


if __name__ == "__main__":
    main()
