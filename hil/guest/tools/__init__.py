"""Small guest-side helpers of the reference guest, built from C by hil (busybox lacks what they do)."""

from pathlib import Path

from hil.image.static_c import StaticProgram

NET_TOOL = StaticProgram(
    name="hil-net",
    source_dir=Path(__file__).resolve().parent,
    main="hil-net.c",
    guest_path="/usr/bin/hil-net",
)
