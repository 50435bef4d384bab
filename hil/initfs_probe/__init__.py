"""A freestanding probe that runs as the Redox initfs bootstrap program on a real kernel (see README.md)."""

from hil.initfs_probe.build import build_initfs_probe, source_digest

__all__ = ["build_initfs_probe", "source_digest"]
