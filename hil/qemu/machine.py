"""A running machine: a QEMU process from a spec, its QMP session and its serial socket, in a run folder.

The base image is never written: a disk gets a qcow2 overlay in the run folder, and several initrds are
joined into one file there (Linux accepts concatenated cpio archives; later files win).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from hil.errors import InfraError
from hil.paths import add_socket_owner, new_socket_dir, private_dir
from hil.qemu.kept import register_kept
from hil.qemu.process import QemuProcess
from hil.qemu.qmp import QmpSession
from hil.qemu.snapshot import Snapshot, wait_incoming
from hil.qemu.spec import MachineSpec, RunPaths

STOP_GRACE_SECONDS = 5.0
SERIAL_LOG = "serial.log"  # hil's copy of every byte read from the serial socket
QEMU_SERIAL_LOG = "qemu-serial.log"  # QEMU's chardev log (goes on while no one is connected)


class Machine:
    """Owns one QEMU from launch to stop. Use as a context manager; `keep()` leaves it running on exit."""

    def __init__(self, spec: MachineSpec, run_dir: Path, *, keep: bool = False) -> None:
        self.spec = spec
        self.restore_from: Snapshot | None = None
        self._restored = False
        self.run_dir = private_dir(run_dir)
        self.socket_dir = new_socket_dir()
        self.paths = RunPaths(
            qmp_socket=self.socket_dir / "qmp.sock",
            serial_socket=self.socket_dir / "serial.sock",
            serial_log=self.run_dir / SERIAL_LOG,
            qemu_serial_log=self.run_dir / QEMU_SERIAL_LOG,
            disk_overlay=self.run_dir / "disk-overlay.qcow2" if spec.disk else None,
            initrd=self._initrd_path(),
        )
        self.keep_running = keep
        self.process: QemuProcess | None = None
        self.qmp = QmpSession(self.run_dir / "qmp.jsonl")
        self.started_at: float | None = None
        self.argv: list[str] = []

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.keep_running:
            self.detach()
        else:
            self.stop()

    # --- start ------------------------------------------------------------------------------------------

    def launch(self) -> None:
        """Start QEMU paused and connect QMP; call `resume()` once the console is attached."""
        self._prepare_files()
        self._restored = False
        self.argv = self.spec.argv(self.paths)
        if self.restore_from is not None:
            self.argv += self.restore_from.incoming_args()
        (self.run_dir / "argv.json").write_text(json.dumps(self.argv, indent=1) + "\n")
        (self.run_dir / "argv.txt").write_text(shlex.join(self.argv) + "\n")
        self.process = QemuProcess(self.argv, self.run_dir / "qemu.stderr", tied_to_hil=not self.keep_running)
        self.started_at = time.monotonic()
        self.process.start()
        add_socket_owner(self.socket_dir, self.process.pid)  # a kept QEMU keeps its sockets after hil exits
        process = self.process
        process.wait_until(self.paths.qmp_socket.exists, timeout=30)
        try:
            self.qmp.connect(self.paths.qmp_socket, give_up=lambda: not process.is_running())
        except InfraError:
            # QEMU creates its sockets before it checks devices: an exit now is a launch failure.
            process.wait_until(lambda: False, timeout=2)
            raise

    def wait_restored(self) -> None:
        """After launch with `restore_from`: the state is loaded, the VM still paused (QMP commands that
        change the machine, like device_add, are refused until then)."""
        if self.restore_from is not None and not self._restored:
            wait_incoming(self.qmp)
            self._restored = True

    def resume(self) -> None:
        self.wait_restored()
        self.qmp.execute("cont")

    def _initrd_path(self) -> Path | None:
        if not self.spec.initrd:
            return None
        if len(self.spec.initrd) == 1:
            return self.spec.initrd[0]
        return self.run_dir / "initrd.joined"

    def _prepare_files(self) -> None:
        for source in (self.spec.kernel, *self.spec.initrd, self.spec.disk):
            if source is not None and not Path(source).is_file():
                raise InfraError(f"boot file {source} does not exist (build or fetch the image first)")
        if len(self.spec.initrd) > 1 and self.paths.initrd:
            with open(self.paths.initrd, "wb") as joined:
                for part in self.spec.initrd:
                    with open(part, "rb") as source:
                        shutil.copyfileobj(source, joined)
        if self.spec.disk and self.paths.disk_overlay:
            frozen = self.restore_from.disk if self.restore_from else None
            if frozen is not None:  # the disk as it was when the snapshot was saved
                create_overlay(frozen, "qcow2", self.paths.disk_overlay)
            else:
                create_overlay(self.spec.disk, self.spec.disk_format, self.paths.disk_overlay)

    # --- stop -------------------------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self.process is not None and self.process.is_running()

    def stop(self) -> int | None:
        """`quit` over QMP, then SIGKILL the process group after a grace period; returns QEMU's status."""
        code = None
        if self.process is not None:
            if self.process.is_running() and self.qmp.connected:
                with contextlib.suppress(Exception):
                    self.qmp.quit()
            code = self.process.wait(STOP_GRACE_SECONDS)
            if code is None:
                self.process.kill()
                code = self.process.exit_code()
        self.qmp.close()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        return code

    def detach(self) -> None:
        """Leave QEMU running (--keep): close hil's connections so `hil console` can attach later."""
        self.qmp.close()
        if self.process is not None:
            self.process.forget()
        record = {
            "pid": self.process.pid if self.process else None,
            "qmp_socket": str(self.paths.qmp_socket),
            "serial_socket": str(self.paths.serial_socket),
            "serial_log": str(self.paths.serial_log),
            "qemu_serial_log": str(self.paths.chardev_log),  # the one that goes on while the VM is kept
            "run_dir": str(self.run_dir),
            "argv": self.argv,
        }
        (self.run_dir / "kept.json").write_text(json.dumps(record, indent=1) + "\n")
        register_kept(self.run_dir)


def create_overlay(base: Path, base_format: str, overlay: Path) -> None:
    """A qcow2 overlay whose writes never reach `base`."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(Path(base).resolve()), str(overlay)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise InfraError("qemu-img not found; install it (apt-get install qemu-utils)") from None
    if result.returncode != 0:
        raise InfraError(f"cannot create overlay over {base}: {result.stderr.strip()}\n  argv: {shlex.join(argv)}")
