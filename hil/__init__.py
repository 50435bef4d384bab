"""hil: hardware-in-the-loop tests for Redox OS under QEMU."""

__version__ = "0.1.0"
