"""Pure-Python Redox image assembly: pkgar packages -> RedoxFS -> the installer's whole-disk layout.

No FUSE, no root and no Redox toolchain: `assemble` reads packages from a folder or URL, lays out a RedoxFS
of the version the bootloader reads, and writes bootloader, GPT, EFI partition and file system into one image.
"""
