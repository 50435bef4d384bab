"""Real guest logs against what hil says about them, like syzkaller's report testdata.

tests/data/redox/ and tests/data/linux/ hold serial logs, each with a sidecar (.toml) naming its source
(a public report, or this machine's real kernel) and what hil must say of it: the guest, the verdict, the
stages reached and every crash or fault with its title, process, mode and signature. Every log goes through
`hil triage --json`, the command users ask about their own logs with.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hil.cli import main as hil_main
from hil.triage.logs import triage_log

DATA = Path(__file__).resolve().parent / "data"
LOGS = sorted([*DATA.glob("redox/*.log"), *DATA.glob("linux/*.log")])


def sidecar(log: Path) -> dict:
    return tomllib.loads(log.with_suffix(".toml").read_text())


@pytest.mark.parametrize("log", LOGS, ids=[f"{log.parent.name}/{log.stem}" for log in LOGS])
def test_hil_triage_says_what_the_sidecar_says(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = sidecar(log)["expect"]
    code = hil_main(["triage", "--json", str(log)])
    found = json.loads(capsys.readouterr().out)
    assert (found["guest"], found["verdict"]) == (expect["guest"], expect["verdict"]), found["reason"]
    assert code == {"pass": 0, "fail": 1, "crash": 1, "hang": 1}[expect["verdict"]]
    assert [stage["name"] for stage in found["stages"] if stage["status"] == "reached"] == expect["reached"]
    wanted = [(f["title"], f.get("process") or None, f.get("mode") or None, f["signature"], f["ends_run"])
              for f in expect.get("faults", [])]  # fmt: skip
    got = [(f["title"], f["process"], f["mode"], f["signature"], f["ends_run"]) for f in found["faults"]]
    assert got == wanted


def test_every_log_names_its_source() -> None:
    for log in LOGS:
        meta = sidecar(log)
        assert meta.get("source") and meta.get("kind") and meta.get("notes"), log.name


def test_the_linux_corpus_covers_the_kinds_and_formats_users_paste() -> None:
    """Real x86_64 oopses from 3.x to 6.x: every kind the parser names, in the formats logs are saved in."""
    linux = [(log, sidecar(log)) for log in LOGS if log.parent.name == "linux"]
    assert len(linux) >= 20
    kinds = {meta["kind"].split(" ")[0] for _, meta in linux}
    assert len(kinds) >= 15, kinds
    crashes = [meta for _, meta in linux if meta["expect"]["verdict"] == "crash"]
    assert all(meta["expect"]["faults"][0]["signature"].count(":") >= 2 for meta in crashes)
    # No PID, address or CPU number may reach a signature: the same bug must read the same on every boot.
    for _, meta in linux:
        for fault in meta["expect"].get("faults", []):
            assert not re.search(r"\b(?:0x)?[0-9a-f]{8,}\b|cpu \d|PID", fault["signature"]), fault["signature"]


def test_the_corpus_is_as_wide_as_promised() -> None:
    """At least 6 real Redox boot logs and 10 Redox crash dumps of distinct kinds (title and era)."""
    redox = [(log, sidecar(log)) for log in LOGS if log.parent.name == "redox"]
    boots = [log for log, meta in redox if meta["kind"] in ("boot", "boot-hang", "mixed")]
    assert len(boots) >= 6
    kinds = {(fault["title"].split(" at ")[0], meta["kind"]) for _, meta in redox
             for fault in meta["expect"].get("faults", [])}  # fmt: skip
    assert len(kinds) >= 10, kinds


def test_the_real_command_line_reads_a_log_from_standard_input() -> None:
    log = DATA / "redox" / "kernel-page-fault-null-write.log"
    done = subprocess.run([sys.executable, "-m", "hil.cli", "triage", "-", "--guest", "redox-kernel"],
                          input=log.read_bytes(), capture_output=True, env={"COLUMNS": "80", "PATH": ""})  # fmt: skip
    text = done.stdout.decode()
    assert done.returncode == 1, text
    assert "Page fault (write to 0x0) in bootstrap at 0x1100" in text
    assert "crash:Page fault:user:bootstrap" in text and max(map(len, text.splitlines())) <= 80


def test_an_allowed_fault_is_known_and_the_boot_passes() -> None:
    text = (DATA / "redox" / "public-02-pannous-aarch64-boot-nulld-fault-login.log").read_text()
    result = triage_log(text, allow=["nulld"])
    assert str(result.verdict) == "pass" and [fault.allowed for fault in result.faults] == [True]


# --- signatures stay the same from boot to boot --------------------------------------------------------


def _variant(text: str, pid: int, cpu: int, context: str, stamp: str) -> str:
    text = re.sub(r"PID \d+", f"PID {pid}", text)
    text = re.sub(r"CPU #\d+", f"CPU #{cpu}", text)
    text = re.sub(r"CONTEXT 0x[0-9a-f]+", f"CONTEXT {context}", text)
    return "\n".join(f"{stamp} {line}" if line.startswith("kernel::") else line for line in text.splitlines())


@pytest.mark.parametrize("log", sorted(DATA.glob("redox/*.log")), ids=lambda log: log.stem)
def test_the_same_fault_on_another_boot_has_the_same_signature(log: Path) -> None:
    text = log.read_text(errors="replace")
    first = triage_log(_variant(text, 3, 0, "0xffffff7f80100e50", ""), "redox-kernel")
    second = triage_log(_variant(text, 41, 1, "0xffffff7f80ab1230", "2026-01-01T00-00-11.187Z"), "redox-kernel")
    assert [f.signature for f in first.faults] == [f.signature for f in second.faults]
    for fault in first.faults:
        assert not re.search(r"PID \d|CPU #?\d|0x[0-9a-f]{6,}|ContextId", fault.signature), fault.signature
