"""Snapshots: keyed by every input that shapes the state, and a restore gives the cold boot's guest."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from hil.devices.storage import Nvme
from hil.guest.profiles import GuestOptions, get_profile
from hil.qemu.snapshot import snapshot_key
from hil.qemu.spec import MachineSpec
from hil.session import GuestSession, PlannedDevice
from tests.helpers import init_hook_overlay, sha256_of


def spec_with(tmp_path: Path, **changes: object) -> MachineSpec:
    kernel = tmp_path / "kernel"
    if not kernel.exists():
        kernel.write_bytes(b"kernel")
    base = MachineSpec(
        kernel=kernel, append="console=ttyS0", extra_args=("-netdev", "user,id=n,hostfwd=tcp:127.0.0.1:4000-:22")
    )
    return base.with_changes(**changes)


def test_key_ignores_what_changes_per_run(tmp_path: Path) -> None:
    first = snapshot_key(spec_with(tmp_path), tmp_path / "run-a", "reference")
    other_port = spec_with(tmp_path, extra_args=("-netdev", "user,id=n,hostfwd=tcp:127.0.0.1:4999-:22"))
    assert snapshot_key(other_port, tmp_path / "run-b", "reference") == first


def test_key_changes_with_every_input(tmp_path: Path) -> None:
    first = snapshot_key(spec_with(tmp_path), tmp_path / "run", "reference")
    assert snapshot_key(spec_with(tmp_path, append="console=ttyS0 quiet"), tmp_path / "run", "reference") != first
    assert snapshot_key(spec_with(tmp_path, smp=4), tmp_path / "run", "reference") != first
    assert snapshot_key(spec_with(tmp_path), tmp_path / "run", "redox") != first
    (tmp_path / "kernel").write_bytes(b"another kernel")
    assert snapshot_key(spec_with(tmp_path), tmp_path / "run", "reference") != first


@pytest.mark.qemu
def test_restore_gives_the_cold_boots_guest_with_nvme_hot_added(tmp_path: Path, reference_image) -> None:
    token = secrets.token_hex(8)  # a fresh input: this test always saves first, then restores
    overlay = init_hook_overlay(tmp_path / "marker.cpio", "50-marker.sh", f"echo {token} > /tmp/marker\n")
    options = GuestOptions(accel="tcg", extra_initrd=(overlay,))
    profile = get_profile("reference")
    digests = {p: sha256_of(p) for p in (reference_image.vmlinux, reference_image.initramfs)}

    def session(name: str) -> GuestSession:
        devices = [PlannedDevice(Nvme("nvme0", size_mib=16))]
        return GuestSession(profile, options, tmp_path / name, devices=devices, snapshot=True)

    read_block = "dd if=/dev/nvme0n1 bs=4096 skip=9 count=1 2>/dev/null | sha256sum"
    with session("cold") as cold:
        cold.start()
        assert cold.snapshot_info["restored"] is False and "saved_seconds" in cold.snapshot_info
        cold_marker, cold_block = cold.run("cat /tmp/marker").output, cold.run(read_block).output
    with session("restored") as restored:
        restored.start()
        assert restored.snapshot_info["restored"] is True
        assert restored.snapshot_info["key"] == cold.snapshot_info["key"]
        assert restored.run("cat /tmp/marker").output == cold_marker == f"{token}\n"
        assert restored.run(read_block).output == cold_block
        assert b"Linux version" not in (restored.run_dir / "serial.log").read_bytes()  # it did not boot again
        assert all(mark.status == "restored" for mark in restored.timeline.marks)
        assert abs(int(restored.run("date +%s").output) - int(cold.run_dir.stat().st_mtime)) < 3600
    for path, digest in digests.items():
        assert sha256_of(path) == digest


def test_pruning_drops_the_least_recently_used_beyond_the_limit(tmp_path: Path, monkeypatch) -> None:
    import os

    from hil.qemu import snapshot

    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(snapshot.CACHE_LIMIT_ENV, "2")
    for age, key in enumerate(["newest", "middle", "oldest"]):
        folder = snapshot.snapshot_root() / key
        folder.mkdir(parents=True)
        (folder / snapshot.STATE_NAME).write_bytes(bytes(1 << 20))
        os.utime(folder, (1000 - age, 1000 - age))
    assert snapshot.prune_snapshots() == ["oldest"]
    assert sorted(p.name for p in snapshot.snapshot_root().iterdir()) == ["middle", "newest"]
