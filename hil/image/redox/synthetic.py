"""Synthetic package repositories for tests and benchmarks: the shapes of Redox's packages, none of their bytes.

`write_repo` lays out a folder like a real package repo (repo.toml, NAME.toml, NAME.pkgar) signed with a
fresh key; `standard_packages` gives kernel, bootloader and base-initfs stand-ins of chosen sizes whose
headers pass the checks assemble makes (ELF magic, initfs magic, a BIOS loader with an empty GPT area that
names the redoxfs crate it was "built" with).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hil.image.redox.initfs import build_initfs
from hil.image.redox.pkgar import MODE_FILE, PackageFile, build_package

BIOS_LOADER_SIZE = 384 << 10
GPT_AREA = range(512, 34 * 512)


def fake_bios_loader(redoxfs_crate: str = "0.6.7", size: int = BIOS_LOADER_SIZE) -> bytes:
    """Boot code in sector 0, zeros where the GPT goes, then "stage 2/3" naming the redoxfs crate version."""
    loader = bytearray(os.urandom(size))
    loader[GPT_AREA.start : GPT_AREA.stop] = bytes(len(GPT_AREA))
    marker = f"/registry/src/index.crates.io-0/redoxfs-{redoxfs_crate}/src/header.rs".encode()
    loader[40 * 512 : 40 * 512 + len(marker)] = marker
    return bytes(loader)


def fake_kernel(size: int) -> bytes:
    return b"\x7fELF\x02\x01\x01" + os.urandom(max(size - 7, 0))


def fake_initfs(size: int) -> bytes:
    head = build_initfs()
    return head + os.urandom(max(size - len(head), 0))


def standard_packages(
    kernel_size: int = 4 << 20, initfs_size: int = 2 << 20, efi_size: int = 170 << 10, redoxfs_crate: str = "0.6.7"
) -> dict[str, list[PackageFile]]:
    """kernel, bootloader and base-initfs as the real ones lay out their files."""
    return {
        "kernel": [PackageFile("boot/kernel", fake_kernel(kernel_size), MODE_FILE | 0o755)],
        "bootloader": [
            PackageFile("boot/bootloader.bios", fake_bios_loader(redoxfs_crate)),
            PackageFile("boot/bootloader.efi", b"MZ" + os.urandom(efi_size - 2), MODE_FILE | 0o755),
        ],
        "base-initfs": [PackageFile("boot/initfs", fake_initfs(initfs_size))],
    }


def write_repo(
    folder: Path,
    packages: Mapping[str, Iterable[PackageFile]],
    depends: Mapping[str, list[str]] | None = None,
    key: Ed25519PrivateKey | None = None,
    with_blake3: bool = True,
) -> Ed25519PrivateKey:
    """Write `packages` as a package repo in `folder`; returns the signing key."""
    key = key or Ed25519PrivateKey.generate()
    folder.mkdir(parents=True, exist_ok=True)
    listing = []
    for name, files in packages.items():
        data = build_package(files, key)
        (folder / f"{name}.pkgar").write_bytes(data)
        deps = ", ".join(f'"{dep}"' for dep in (depends or {}).get(name, []))
        meta = f'name = "{name}"\nversion = "1.0"\ntarget = "x86_64-unknown-redox"\ndepends = [{deps}]\n'
        if with_blake3:
            meta += f'blake3 = "{data[96:128].hex()}"\nnetwork_size = {len(data)}\n'
        (folder / f"{name}.toml").write_text(meta)
        listing.append(f'{name} = "1.0"')
    (folder / "repo.toml").write_text("[packages]\n" + "\n".join(sorted(listing)) + "\n")
    return key
