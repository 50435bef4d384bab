"""`hil image assemble` end to end on synthetic packages, its user errors, `hil image ls`, and a real boot.

The real boot (test_real_kernel_boots) needs real Redox packages: point HIL_REDOX_PKGS at a package folder
(NAME.pkgar + NAME.toml, e.g. the x86_64-unknown-redox folder of a public package build). It assembles an
image with the real kernel and bootloader plus a tiny initfs whose entry is an invalid instruction, boots it
in QEMU (TCG) and expects the kernel to log its way to the bootstrap and then report the fault.
"""

from __future__ import annotations

import argparse
import io
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from hil.errors import HilError, UsageError
from hil.image.redox import disk
from hil.image.redox.assemble import (
    EFI_BOOT_FILE,
    add_assemble_arguments,
    add_ls_arguments,
    assemble,
    assemble_command,
    default_packages,
    list_image,
    ls_command,
    parse_add,
    parse_size,
    read_image_file,
)
from hil.image.redox.initfs import bootstrap_entry, build_initfs
from hil.image.redox.pkgar import MODE_FILE, PackageFile, read_package
from hil.image.redox.synthetic import fake_bios_loader, fake_kernel, standard_packages, write_repo

MIB = 1 << 20
REAL_PACKAGES_ENV = "HIL_REDOX_PKGS"


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[PackageFile]]:
    found = standard_packages(kernel_size=600_000, initfs_size=300_000, efi_size=50_000)
    found["extras"] = [
        PackageFile("usr/bin/tool", b"\x7fELF tool", MODE_FILE | 0o755),
        PackageFile.symlink("usr/bin/alias", "tool"),
        PackageFile("boot/initfs", b"RedoxFtw overridden by a later package"),
    ]
    return found


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, packages: dict[str, list[PackageFile]]) -> Path:
    folder = tmp_path_factory.mktemp("packages")
    write_repo(folder, packages, depends={"extras": ["base-initfs"]})
    return folder


def _files(packages: dict[str, list[PackageFile]], name: str) -> dict[str, bytes]:
    return {item.path: item.data for item in packages[name]}


# --- end to end -----------------------------------------------------------------------------------------------


def test_assemble_writes_a_disk_the_readers_understand(
    repo: Path, packages: dict[str, list[PackageFile]], tmp_path: Path
) -> None:
    out = tmp_path / "redox.img"
    result = assemble(repo, out, size=64 * MIB, mtime=1_700_000_000)
    assert out.stat().st_size == 64 * MIB and result.redoxfs_version == 6
    assert [p.name for p in result.packages] == ["kernel", "bootloader", "base-initfs"]
    assert result.kernel_from == result.initfs_from == "packages" and result.efi_loader
    assert set(result.timings) >= {"read packages", "write image", "total"}

    entries = {entry.path: entry for entry in list_image(out)}
    for name in ("kernel", "bootloader", "base-initfs"):
        for path, data in _files(packages, name).items():
            assert read_image_file(out, "/" + path) == data
            assert entries["/" + path].size == len(data)
    assert entries["/boot/kernel"].mode == MODE_FILE | 0o755

    raw = out.read_bytes()
    bios = _files(packages, "bootloader")["boot/bootloader.bios"]
    assert raw[:446] == bios[:446] and raw[34 * 512 : len(bios)] == bios[34 * 512 :]
    with out.open("rb") as image:
        gpt = disk.read_gpt(image, "redox.img", 64 * MIB)
        disk.read_gpt(image, "redox.img", 64 * MIB, primary=False)
    assert [p.name for p in gpt.partitions] == ["BIOS", "EFI", "REDOX"]
    assert raw[disk.REDOXFS_OFFSET : disk.REDOXFS_OFFSET + 8] == b"RedoxFS\0"


@pytest.mark.skipif(shutil.which("mcopy") is None, reason="mcopy (Debian package mtools) is not installed")
def test_the_uefi_loader_lands_in_the_efi_partition(
    repo: Path, packages: dict[str, list[PackageFile]], tmp_path: Path
) -> None:
    out = tmp_path / "redox.img"
    assemble(repo, out, size=16 * MIB)
    copy = tmp_path / "BOOTX64.EFI"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mcopy", "-i", f"{out}@@{MIB}", f"::{EFI_BOOT_FILE}", str(copy)], check=True, env=env)
    assert copy.read_bytes() == _files(packages, "bootloader")["boot/bootloader.efi"]


def test_local_kernel_initfs_and_added_files_override_the_packages(repo: Path, tmp_path: Path) -> None:
    kernel, initfs = tmp_path / "kernel", tmp_path / "initfs"
    kernel.write_bytes(fake_kernel(5000))
    initfs.write_bytes(build_initfs())
    host = tmp_path / "overlay"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "motd").write_text("hello\n")
    (host / "run.sh").write_text("#!/bin/sh\n")
    (host / "run.sh").chmod(0o750)
    (host / "link").symlink_to("run.sh")
    out = tmp_path / "redox.img"
    result = assemble(
        repo, out, size=16 * MIB, kernel=kernel, initfs=initfs,
        add=[(host, "/opt/overlay"), (host / "etc" / "motd", "/etc/motd")],
    )  # fmt: skip
    assert [p.name for p in result.packages] == ["bootloader"]  # kernel and base-initfs are not needed
    assert (result.kernel_from, result.initfs_from) == (str(kernel), str(initfs))
    assert read_image_file(out, "/boot/kernel") == kernel.read_bytes()
    assert bootstrap_entry(read_image_file(out, "/boot/initfs")) == 0x1100
    assert read_image_file(out, "/etc/motd") == b"hello\n"
    entries = {entry.path: entry for entry in list_image(out)}
    assert entries["/opt/overlay/run.sh"].mode == MODE_FILE | 0o750
    assert entries["/opt/overlay/link"].link_target == "run.sh"


def test_named_packages_bring_their_dependencies_and_later_files_win(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "redox.img"
    result = assemble(repo, out, size=16 * MIB, package_names=["kernel", "bootloader", "extras"])
    assert [p.name for p in result.packages] == ["kernel", "bootloader", "base-initfs", "extras"]
    assert result.replaced == ["/boot/initfs (base-initfs -> extras)"]
    assert read_image_file(out, "/boot/initfs").startswith(b"RedoxFtw overridden")
    entries = {entry.path: entry for entry in list_image(out)}
    assert entries["/usr/bin/alias"].is_symlink and entries["/usr/bin/alias"].link_target == "tool"


def test_default_packages_leave_out_what_local_files_replace() -> None:
    assert default_packages() == ["kernel", "bootloader", "base-initfs"]
    assert default_packages(kernel=Path("k")) == ["bootloader", "base-initfs"]
    assert default_packages(Path("k"), Path("i")) == ["bootloader"]


def test_a_failed_assembly_leaves_the_old_image_and_no_temp_file(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "redox.img"
    out.write_bytes(b"old image")
    big = tmp_path / "huge"
    big.write_bytes(os.urandom(6 * MIB))
    with pytest.raises(UsageError, match="do not fit"):
        assemble(repo, out, size=8 * MIB, add=[(big, "/huge")])
    assert out.read_bytes() == b"old image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge", "redox.img"]


# --- user mistakes --------------------------------------------------------------------------------------------


def test_user_mistakes_are_usage_errors_that_say_what_to_do(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.img"
    not_elf = tmp_path / "kernel.txt"
    not_elf.write_text("not a kernel")
    cases = [
        ({"packages": tmp_path / "nope"}, "no such folder"),
        ({"kernel": tmp_path / "missing"}, "--kernel .*missing: no such file"),
        ({"kernel": not_elf}, "not an ELF kernel"),
        ({"initfs": not_elf}, "not a Redox initfs"),
        ({"package_names": ["kernel"]}, "no /boot/bootloader.bios .* include the `bootloader` package"),
        ({"package_names": ["kernel", "bootloader"]}, "no /boot/initfs .* pass --initfs FILE"),
        ({"package_names": ["nothere"]}, "nothere.toml: no such package metadata"),
        ({"add": [(tmp_path / "ghost", "/x")]}, "ghost does not exist"),
        ({"add": [(not_elf, "relative")]}, "must be an absolute path"),
        ({"size": 1000}, "not a multiple of 512"),
        ({"public_key": "00" * 32}, "signed with key"),
    ]
    for overrides, message in cases:
        arguments = {"packages": repo, "out": out, "size": 16 * MIB, **overrides}
        with pytest.raises(Exception, match=message) as caught:
            assemble(**arguments)
        assert caught.type.__name__ in ("UsageError", "PkgarError"), (overrides, caught.value)
    assert not out.exists()


def test_a_bootloader_for_another_redoxfs_version_is_refused(tmp_path: Path) -> None:
    files = standard_packages(kernel_size=10_000, initfs_size=10_000, efi_size=10_000)
    files["bootloader"][0] = PackageFile("boot/bootloader.bios", fake_bios_loader("0.7.0"))
    write_repo(tmp_path / "repo", files)
    with pytest.raises(UsageError, match=r"built with redoxfs 0\.7, which reads RedoxFS version 7"):
        assemble(tmp_path / "repo", tmp_path / "x.img", size=16 * MIB)


def test_size_and_add_arguments_parse() -> None:
    assert parse_size("256M") == 256 * MIB and parse_size("1G") == 1 << 30 and parse_size("4096") == 4096
    assert parse_size("512MiB") == 512 * MIB and parse_size(123) == 123
    assert parse_add("build/probe:/usr/bin/probe") == (Path("build/probe"), "/usr/bin/probe")
    assert parse_add("C:/x:/y") == (Path("C:/x"), "/y")
    for bad in ("probe", "probe:relative", ":/x"):
        with pytest.raises(UsageError, match="SRC:DST"):
            parse_add(bad)
    with pytest.raises(UsageError, match="256M"):
        parse_size("big")


# --- the command-line functions -------------------------------------------------------------------------------


def test_assemble_and_ls_commands(repo: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    add_assemble_arguments(build := commands.add_parser("assemble"))
    add_ls_arguments(listing := commands.add_parser("ls"))
    out = tmp_path / "cli.img"
    args = build.parse_args(["--packages", str(repo), "--out", str(out), "--size", "16M"])
    console = Console(file=io.StringIO(), width=200)
    assert assemble_command(args, console) == 0
    report = console.file.getvalue()
    assert "RedoxFS v6" in report and "kernel 1.0" in report
    console = Console(file=io.StringIO(), width=200)
    assert ls_command(listing.parse_args([str(out)]), console) == 0
    lines = console.file.getvalue().splitlines()
    assert any(line.startswith("-rwxr-xr-x") and line.endswith(" /boot/kernel") for line in lines)
    assert lines[0].startswith("drwxr-xr-x") and lines[0].endswith(" /")


def test_ls_of_something_else_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(bytes(4 * MIB))
    with pytest.raises(Exception, match=r"junk\.img: no RedoxFS header"):
        list_image(junk)
    with pytest.raises(UsageError, match="no such image"):
        list_image(tmp_path / "missing.img")


# --- a real kernel --------------------------------------------------------------------------------------------

BOOT_LINES = (
    "kernel::log:INFO -- Logger initialized.",
    "Redox OS starting...",
    "kernel:INFO -- Env: ",
    "REDOXFS_UUID=",
    "Bootstrap entry point: 1100",
    "Invalid opcode fault",
    "RIP:   0000000000001100",
)
OVMF_FILES = (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_CODE.fd"))
OVMF_CODE = next((path for path in OVMF_FILES if path.exists()), None)


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize(
    ("firmware", "kernel_padding"),
    [("bios", 0), ("uefi", 0), ("bios", 20 * MIB)],
    ids=["bios", "uefi", "bios-21MiB-kernel"],
)
def test_real_kernel_boots(firmware: str, kernel_padding: int, tmp_path: Path) -> None:
    """The real loaders read our GPT, FAT and RedoxFS (with a padded kernel: through indirect record lists)."""
    folder = os.environ.get(REAL_PACKAGES_ENV)
    if not folder:
        pytest.skip(f"set {REAL_PACKAGES_ENV} to a folder of real Redox packages (kernel.pkgar, bootloader.pkgar, ...)")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    if firmware == "uefi" and OVMF_CODE is None:
        pytest.skip("no OVMF firmware (Debian package ovmf) for the UEFI boot")
    initfs = tmp_path / "initfs"
    initfs.write_bytes(build_initfs())  # its entry is ud2: the kernel must report an invalid opcode at 0x1100
    kernel = None
    if kernel_padding:
        package = read_package(Path(folder) / "kernel.pkgar")
        kernel = tmp_path / "kernel"  # ELF loading ignores bytes past the segments; not zeros, which stay sparse
        kernel.write_bytes(package.read(package.entries[0]) + b"\x5a" * kernel_padding)
    image = tmp_path / "redox.img"
    result = assemble(folder, image, initfs=initfs, kernel=kernel)
    serial = _boot(image, tmp_path, firmware)
    for line in BOOT_LINES:
        assert line in serial, f"{line!r} missing from the serial output:\n{serial[-3000:]}"
    assert f"REDOXFS_UUID={result.fs_uuid}" in serial


def _boot(image: Path, scratch: Path, firmware: str, timeout: float = 90) -> str:
    """Boot `image` (TCG, no display, serial on stdout) until the kernel reports the fault; the serial text."""
    argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048",
            "-nodefaults", "-display", "none", "-vga", "none", "-serial", "stdio", "-no-reboot",
            "-drive", f"file={image},format=raw"]  # fmt: skip
    if firmware == "uefi":
        variables = scratch / "OVMF_VARS.fd"
        variables.write_bytes(bytes(OVMF_CODE.with_name(OVMF_CODE.name.replace("CODE", "VARS")).read_bytes()))
        argv += ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,file={variables}"]  # fmt: skip
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and b"UNHANDLED EXCEPTION" not in output:
            ready, _, _ = select.select([process.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    break
                output += chunk
    finally:
        process.kill()
        process.wait(timeout=10)
    return output.decode(errors="replace")


# --- assembled disks cached by their inputs ----------------------------------------------------------------


def test_a_disk_is_assembled_once_per_set_of_inputs(
    tmp_path: Path, packages: dict[str, list[PackageFile]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hil.image.redox.disk_cache import assembled_disk, disk_key

    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "packages"
    write_repo(folder, packages, depends={"extras": ["base-initfs"]})
    kernel = tmp_path / "kernel"
    kernel.write_bytes(fake_kernel(200_000))
    first = assembled_disk(str(folder), 64 * MIB, kernel, None)
    assert first is not None and first.stat().st_mode & 0o777 == 0o444  # runs boot it through an overlay
    made = first.stat().st_ino  # assembling again would publish a new file; finding it only marks it used
    again = assembled_disk(str(folder), 64 * MIB, kernel, None)
    assert again == first and again.stat().st_ino == made  # found, not assembled again
    assert list_image(first)  # a disk the readers understand
    # Any input that reaches the disk gives another one: the kernel, the size, a package.
    kernel.write_bytes(fake_kernel(200_001))
    assert assembled_disk(str(folder), 64 * MIB, kernel, None) != first
    assert disk_key(str(folder), 65 * MIB, kernel, None) != disk_key(str(folder), 64 * MIB, kernel, None)
    before = disk_key(str(folder), 64 * MIB, None, None)
    write_repo(folder, {**packages, "kernel": standard_packages(kernel_size=600_001)["kernel"]})
    assert disk_key(str(folder), 64 * MIB, None, None) != before
    assert disk_key("https://static.redox-os.org/pkg/x86_64-unknown-redox", 64 * MIB, None, None) is None


def test_a_damaged_package_publishes_no_disk(
    tmp_path: Path, packages: dict[str, list[PackageFile]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hil.image.redox.disk_cache import DISKS, assembled_disk

    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "packages"
    write_repo(folder, packages)
    (folder / "bootloader.pkgar").write_bytes(b"not a package")
    with pytest.raises(HilError, match="truncated"):
        assembled_disk(str(folder), 64 * MIB, None, None)
    assert DISKS.entries() == []
