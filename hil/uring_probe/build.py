"""The Linux io_uring probe as a static program the reference guest carries at /usr/bin/hil-uring-probe."""

from __future__ import annotations

from pathlib import Path

from hil.image.static_c import StaticProgram

LINUX_PROBE = StaticProgram(
    name="hil-uring-probe",
    source_dir=Path(__file__).resolve().parent / "linux",
    main="hil-uring-probe.c",
    guest_path="/usr/bin/hil-uring-probe",
)


def build_linux_probe(out_dir: Path) -> Path:
    return LINUX_PROBE.build(out_dir)
