"""`hil image assemble` and `hil image ls`: a bootable Redox disk image from pkgar packages, in pure Python.

assemble: resolve the packages (default: kernel, bootloader, base-initfs, each left out when --kernel or
--initfs replaces what it provides) with their dependencies, put every package file into a RedoxFS,
optionally replace /boot/kernel and /boot/initfs and add host files, then write the installer's layout
(bootloader.bios at byte 0, GPT, FAT EFI partition with the UEFI loader, RedoxFS at 2 MiB) into a temp file
that is renamed over the output only when complete.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hil.errors import InfraError, UsageError
from hil.image.redox import disk, redoxfs
from hil.image.redox.fat import build_fat
from hil.image.redox.initfs import MAGIC as INITFS_MAGIC
from hil.image.redox.pkgar import load_public_key
from hil.image.redox.repo import PackageRepo, Progress
from hil.store import atomic_output

MIB = 1 << 20
DEFAULT_SIZE = 256 * MIB
KERNEL_PATH = "/boot/kernel"
INITFS_PATH = "/boot/initfs"
BIOS_LOADER_PATH = "/boot/bootloader.bios"
EFI_LOADER_PATH = "/boot/bootloader.efi"
EFI_BOOT_FILE = "EFI/BOOT/BOOTX64.EFI"
ELF_MAGIC = b"\x7fELF"
# redoxfs crate minor version -> on-disk format version (0.9 kept format 8)
_CRATE_TO_FORMAT = {5: 5, 6: 6, 7: 7, 8: 8, 9: 8}
_REDOXFS_CRATE = re.compile(rb"redoxfs-0\.(\d+)\.\d+[/\\]src")


@dataclass(frozen=True)
class PackageSummary:
    name: str
    version: str
    files: int
    bytes: int


@dataclass
class AssembleResult:
    """What went into an image and how long each phase took (seconds)."""

    image: Path
    size: int
    redoxfs_version: int
    fs_uuid: str
    packages: list[PackageSummary]
    files: int
    data_bytes: int
    used_bytes: int
    kernel_from: str
    initfs_from: str
    efi_loader: bool
    replaced: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def default_packages(kernel: Path | None = None, initfs: Path | None = None) -> list[str]:
    """The packages a bootable image needs, less those whose one file a local --kernel/--initfs replaces."""
    names = ["bootloader"]
    if kernel is None:
        names.insert(0, "kernel")
    if initfs is None:
        names.append("base-initfs")
    return names


def assemble(
    packages: str | Path,
    out: Path,
    size: int = DEFAULT_SIZE,
    kernel: Path | None = None,
    initfs: Path | None = None,
    add: Sequence[tuple[Path, str]] = (),
    package_names: Sequence[str] | None = None,
    public_key: bytes | str | Path | None = None,
    progress: Progress | None = None,
    mtime: float | None = None,
    fs_uuid: bytes | None = None,
) -> AssembleResult:
    """Build a whole-disk Redox image at `out` (see the module docstring); user mistakes raise UsageError."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    layout = disk.installer_layout(size)
    key = load_public_key(public_key) if public_key is not None else None
    kernel_data, initfs_data = _local_boot_file(kernel, "--kernel"), _local_boot_file(initfs, "--initfs")
    _check_adds(add)

    repo = PackageRepo(packages, public_key=key, progress=progress)
    names = repo.resolve(package_names if package_names is not None else default_packages(kernel, initfs))
    timings["resolve"] = time.perf_counter() - started

    tree = redoxfs.new_tree(redoxfs.DEFAULT_VERSION, now=mtime)
    phase = time.perf_counter()
    summaries, replaced = _add_packages(tree, repo, names)
    timings["read packages"] = time.perf_counter() - phase

    phase = time.perf_counter()
    sources = _apply_overrides(tree, kernel, kernel_data, initfs, initfs_data, add, mtime)
    bios_loader, efi_loader = _loaders(tree, names)
    version = _format_version(bios_loader)
    _check_boot_files(tree, names)
    timings["add files"] = time.perf_counter() - phase

    phase = time.perf_counter()
    fs_id = fs_uuid or uuidlib.uuid4().bytes
    stats = _write_image(out, layout, bios_loader, efi_loader, tree, version, fs_id, mtime)
    timings["write image"] = time.perf_counter() - phase
    timings["total"] = time.perf_counter() - started
    return AssembleResult(
        image=out, size=size, redoxfs_version=version, fs_uuid=str(uuidlib.UUID(bytes=fs_id)),
        packages=summaries, files=sum(1 for _, n in tree.walk() if not n.is_dir), data_bytes=stats.data_bytes,
        used_bytes=stats.used_blocks * redoxfs.BLOCK_SIZE, kernel_from=sources[0], initfs_from=sources[1],
        efi_loader=efi_loader is not None, replaced=replaced, timings=timings,
    )  # fmt: skip


def _local_boot_file(path: Path | None, option: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{option} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{option} {path}: is a directory, give the file") from None
    magic, what = (ELF_MAGIC, "an ELF kernel") if option == "--kernel" else (INITFS_MAGIC, "a Redox initfs")
    if not data.startswith(magic):
        raise UsageError(f"{option} {path}: not {what} (it does not start with {magic!r}); the bootloader would stop")
    return data


def _check_adds(add: Sequence[tuple[Path, str]]) -> None:
    for source, destination in add:
        if not Path(source).exists() and not Path(source).is_symlink():
            raise UsageError(f"--add {source}:{destination}: {source} does not exist")
        if not destination.startswith("/"):
            raise UsageError(f"--add {source}:{destination}: the destination must be an absolute path in the image")


def _add_packages(tree: redoxfs.FsTree, repo: PackageRepo, names: list[str]) -> tuple[list[PackageSummary], list[str]]:
    """Every file of every package; a later package's file replaces an earlier one's (reported)."""
    owners: dict[str, str] = {}
    replaced: list[str] = []
    summaries = []
    for name in names:
        package = repo.package(name)
        total = 0
        for entry, data in package.files():
            path = "/" + entry.path
            if path in owners:
                replaced.append(f"{path} ({owners[path]} -> {name})")
            owners[path] = name
            if entry.is_symlink:
                tree.symlink(path, data)
            else:
                tree.add_file(path, data, entry.mode & 0o7777)
            total += len(data)
        summaries.append(PackageSummary(name, repo.info(name).version, len(package.entries), total))
    return summaries, replaced


def _apply_overrides(
    tree: redoxfs.FsTree,
    kernel: Path | None,
    kernel_data: bytes | None,
    initfs: Path | None,
    initfs_data: bytes | None,
    add: Sequence[tuple[Path, str]],
    mtime: float | None,
) -> tuple[str, str]:
    """--kernel, --initfs and --add files; returns where the kernel and initfs came from."""
    sources = ["packages", "packages"]
    if kernel_data is not None:
        tree.add_file(KERNEL_PATH, kernel_data, 0o755, mtime=mtime)
        sources[0] = str(kernel)
    if initfs_data is not None:
        tree.add_file(INITFS_PATH, initfs_data, 0o644, mtime=mtime)
        sources[1] = str(initfs)
    for source, destination in add:
        _add_host_path(tree, Path(source), destination)
    return sources[0], sources[1]


def _add_host_path(tree: redoxfs.FsTree, source: Path, destination: str) -> None:
    """A host file, symlink or whole directory at `destination`, keeping permission bits and mtimes."""
    info = source.lstat()
    if stat.S_ISLNK(info.st_mode):
        tree.symlink(destination, os.readlink(source), mtime=info.st_mtime)
    elif stat.S_ISDIR(info.st_mode):
        tree.mkdir(destination, info.st_mode & 0o7777, mtime=info.st_mtime)
        for child in sorted(source.iterdir()):
            _add_host_path(tree, child, f"{destination.rstrip('/')}/{child.name}")
    elif stat.S_ISREG(info.st_mode):
        tree.add_file(destination, source.read_bytes(), info.st_mode & 0o7777, mtime=info.st_mtime)
    else:
        raise UsageError(f"--add {source}: only files, directories and symlinks can go into the image")


def _loaders(tree: redoxfs.FsTree, names: list[str]) -> tuple[bytes, bytes | None]:
    bios = tree.get(BIOS_LOADER_PATH)
    if bios is None or bios.is_dir:
        raise UsageError(f"no {BIOS_LOADER_PATH} in the packages {', '.join(names)}; include the `bootloader` package")
    efi = tree.get(EFI_LOADER_PATH)
    return bios.data, (efi.data if efi is not None and not efi.is_dir else None)


def _format_version(bios_loader: bytes) -> int:
    """The RedoxFS version the BIOS loader reads (from the redoxfs crate version its panic paths name)."""
    found = _REDOXFS_CRATE.search(bios_loader)
    version = _CRATE_TO_FORMAT.get(int(found.group(1))) if found else redoxfs.DEFAULT_VERSION
    if version != redoxfs.DEFAULT_VERSION:
        crate = f"redoxfs 0.{found.group(1).decode()}" if found else "an unknown redoxfs"
        raise UsageError(
            f"this bootloader was built with {crate}, which reads RedoxFS version {version}; hil writes "
            f"version {redoxfs.DEFAULT_VERSION} (redoxfs 0.6), so the image would not boot. Use packages "
            "whose bootloader reads version 6"
        )
    return version


def _check_boot_files(tree: redoxfs.FsTree, names: list[str]) -> None:
    for path, option, package in ((KERNEL_PATH, "--kernel", "kernel"), (INITFS_PATH, "--initfs", "base-initfs")):
        node = tree.get(path)
        if node is None or node.is_dir:
            raise UsageError(
                f"no {path} in the image: the packages ({', '.join(names)}) have none; "
                f"pass {option} FILE or include the `{package}` package"
            )


def _write_image(
    out: Path,
    layout: disk.DiskLayout,
    bios_loader: bytes,
    efi_loader: bytes | None,
    tree: redoxfs.FsTree,
    version: int,
    fs_uuid: bytes,
    mtime: float | None,
) -> redoxfs.FsStats:
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out}: is a directory; give the image file's path")
    try:
        with atomic_output(out, mode=0o644) as temporary, temporary.open("w+b") as image:
            image.truncate(layout.size)  # sparse: untouched space reads as zeros
            disk.write_bios_loader(image, bios_loader, layout)
            disk.write_partition_table(image, layout)
            files = {EFI_BOOT_FILE: efi_loader} if efi_loader is not None else {}
            image.seek(layout.efi.offset)
            image.write(build_fat(layout.efi.size, files, mtime=mtime))
            stats = redoxfs.new_writer(tree, version).write(image, layout.redox.offset, layout.redox.size, fs_uuid)
    except OSError as error:
        raise InfraError(f"cannot write {out}: {error.strerror or error}") from None
    return stats


# --- reading an image -----------------------------------------------------------------------------------------


def open_image_fs(image_file, name: str, size: int) -> redoxfs.FsReader:
    offset = disk.redoxfs_offset(image_file, name, size)
    return redoxfs.open_image(image_file, offset, name)


def list_image(image: Path) -> list[redoxfs.FsEntry]:
    """Every file, directory and symlink in the image's RedoxFS (path, mode, size, ...), parents first."""
    with _open(image) as handle:
        return open_image_fs(handle, str(image), os.fstat(handle.fileno()).st_size).entries()


def read_image_file(image: Path, path: str) -> bytes:
    with _open(image) as handle:
        return open_image_fs(handle, str(image), os.fstat(handle.fileno()).st_size).read(path)


def _open(image: Path):
    try:
        return open(image, "rb")
    except FileNotFoundError:
        raise UsageError(f"{image}: no such image") from None
    except IsADirectoryError:
        raise UsageError(f"{image}: is a directory, not an image") from None


# --- command line ---------------------------------------------------------------------------------------------


def parse_size(text: str | int) -> int:
    """Bytes from "256M", "1G", "512K" or a plain number of bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise UsageError(f"--size {text!r}: give bytes or a number with K, M or G (e.g. 256M)")
    number, unit = int(match.group(1)), match.group(2).upper()
    return number << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[unit]


def parse_add(text: str) -> tuple[Path, str]:
    """ "SRC:DST" (DST absolute in the image; it cannot contain ':', so the last ':' splits)."""
    source, sep, destination = text.rpartition(":")
    if not sep or not source or not destination.startswith("/"):
        raise UsageError(
            f"--add {text!r}: expected SRC:DST with DST an absolute path in the image, e.g. ./probe:/bin/probe"
        )
    return Path(source), destination


def add_assemble_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `assemble_command` reads, for the CLI to attach to `hil image assemble`."""
    parser.add_argument("--packages", required=True, metavar="DIR|URL", help="a package folder or repository URL")
    parser.add_argument("--out", required=True, type=Path, metavar="IMG", help="the disk image to write")
    parser.add_argument("--size", default="256M", help="image size, e.g. 256M or 1G (default: 256M)")
    parser.add_argument("--kernel", type=Path, metavar="FILE", help="use this kernel as /boot/kernel")
    parser.add_argument("--initfs", type=Path, metavar="FILE", help="use this initfs as /boot/initfs")
    parser.add_argument("--add", action="append", default=[], metavar="SRC:DST", help="add a host file (repeatable)")
    parser.add_argument("--package", action="append", dest="package_names", metavar="NAME",
                        help="install this package instead of the default set (repeatable)")  # fmt: skip
    parser.add_argument("--public-key", metavar="HEX|FILE", help="require packages signed by this ed25519 key")


def add_ls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, metavar="IMG", help="a disk image or bare RedoxFS image")


def assemble_command(args: argparse.Namespace, console) -> int:
    """`hil image assemble`; expects the attributes `add_assemble_arguments` defines."""
    result = _run_with_progress(console, lambda progress: assemble(
        packages=args.packages, out=Path(args.out), size=parse_size(getattr(args, "size", DEFAULT_SIZE)),
        kernel=getattr(args, "kernel", None), initfs=getattr(args, "initfs", None),
        add=[parse_add(item) for item in getattr(args, "add", None) or []],
        package_names=getattr(args, "package_names", None), public_key=getattr(args, "public_key", None),
        progress=progress,
    ))  # fmt: skip
    _print_result(console, result)
    return 0


def _run_with_progress(console, work: Callable[[Progress | None], AssembleResult]) -> AssembleResult:
    try:
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn
    except ImportError:  # pragma: no cover - rich is a dependency; stay usable without it
        return work(None)
    tasks: dict[str, int] = {}
    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console,
                  transient=True) as bar:  # fmt: skip

        def report(what: str, done: int, total: int | None) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(f"download {what}", total=total)
            bar.update(tasks[what], completed=done, total=total)

        return work(report)


def _print_result(console, result: AssembleResult) -> None:
    console.print(f"[bold]{result.image}[/]: {result.size >> 20} MiB, RedoxFS v{result.redoxfs_version} "
                  f"{result.fs_uuid}, {result.files} files")  # fmt: skip
    for package in result.packages:
        version = f" {package.version}" if package.version else ""
        console.print(f"  {package.name}{version}: {package.files} files, {_human(package.bytes)}")
    console.print(f"  kernel from {result.kernel_from}, initfs from {result.initfs_from}, "
                  f"UEFI loader {'installed' if result.efi_loader else 'absent (BIOS boot only)'}")  # fmt: skip
    for line in result.replaced[:10]:
        console.print(f"  [yellow]replaced[/] {line}")
    phases = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in result.timings.items())
    console.print(f"  [dim]{phases}[/]")


def ls_command(args: argparse.Namespace, console) -> int:
    """`hil image ls IMG`: one line per node: mode, size, path (and a symlink's target)."""
    for entry in list_image(Path(args.image)):
        target = f" -> {entry.link_target}" if entry.link_target is not None else ""
        console.print(f"{stat.filemode(entry.mode)} {entry.size:>10} {entry.path}{target}", markup=False,
                      highlight=False)  # fmt: skip
    return 0


def _human(size: int) -> str:
    return f"{size} B" if size < 1024 else f"{size / 1024:.1f} KiB" if size < MIB else f"{size / MIB:.1f} MiB"
