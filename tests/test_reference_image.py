"""The reference guest: cache key logic (fast), the built image's content (slow), and one real boot (qemu).

The slow tests build once per module through build_reference() in hil's normal cache, so later runs reuse
the image; the first build downloads about 75 MB of Debian packages with apt-get.
"""

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from rich.console import Console

from hil.image import reference
from hil.image.bzimage import pvh_entry
from hil.image.cpio import CpioEntry, NewcWriter, read_newc
from hil.image.debs import DEB_DIR_ENV, sha256_file
from hil.image.elfdeps import read_elf_links
from hil.image.kmodules import canonical_module_name
from hil.paths import cache_dir

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"linux-image-6.1.0-56-amd64": "6.1.192-2", "busybox-static": "1:1.35.0-4+deb12u1+b1"}
MODULES = ["nvme-core", "nvme"]


# --- pure logic ---------------------------------------------------------------------------------------


def test_cache_key_is_stable_and_order_independent() -> None:
    key = reference.cache_key(PACKAGES, MODULES, "init")
    assert key == reference.cache_key(dict(reversed(PACKAGES.items())), MODULES, "init")
    assert len(key) == 16 and int(key, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        lambda p, m, i, f: ({**p, "busybox-static": "1:1.35.0-5"}, m, i, f),
        lambda p, m, i, f: ({**p, "dropbear-bin": "2022.83-1"}, m, i, f),
        lambda p, m, i, f: (p, [*m, "e1000"], i, f),
        lambda p, m, i, f: (p, list(reversed(m)), i, f),
        lambda p, m, i, f: (p, m, i + "\necho more", f),
        lambda p, m, i, f: (p, m, i, {"/root/.ssh/authorized_keys": b"ssh-ed25519 OTHER"}),
    ],
    ids=["version", "package", "module", "module-order", "init", "guest-file"],
)
def test_cache_key_changes_with_every_input(change) -> None:
    files = {"/root/.ssh/authorized_keys": b"ssh-ed25519 AAAA"}
    base = reference.cache_key(PACKAGES, MODULES, "#!/bin/sh\n", files)
    assert reference.cache_key(*change(PACKAGES, MODULES, "#!/bin/sh\n", files)) != base


def test_cache_key_changes_with_builder_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = reference.cache_key(PACKAGES, MODULES, "init")
    monkeypatch.setattr(reference, "BUILDER_VERSION", "999")
    assert reference.cache_key(PACKAGES, MODULES, "init") != before


def test_spec_is_packaged_and_matches_images_folder() -> None:
    spec = reference.load_spec()
    assert spec.kernel_package == "linux-image-amd64"
    assert spec.modules[:2] == ("crc64", "crct10dif_common")
    assert {"e1000", "pvpanic", "pvpanic-pci", "usb-storage", "nvme"} <= set(spec.modules)
    assert "dropbear-bin" in spec.packages and "/usr/sbin/dropbear" in spec.programs
    assert (REPO / "images/reference.toml").read_text() == reference.data_text(reference.SPEC_NAME)


def test_init_script_prints_every_milestone() -> None:
    init = reference.data_text(reference.INIT_NAME)
    for milestone in ("mounted", "modules loaded", "network eth0", "network failed", "network none"):
        assert f'say "{milestone}' in init
    assert 'echo "HIL-GUEST-READY" >/dev/console' in init
    assert reference.MODULE_LIST_PATH in init


def test_ssh_key_is_made_once_and_loads_in_paramiko(tmp_path: Path) -> None:
    key_path = tmp_path / "id_ed25519"
    public = reference.ensure_ssh_key(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert public.startswith("ssh-ed25519 ") and public.endswith("\n")
    assert reference.ensure_ssh_key(key_path) == public
    loaded = paramiko.Ed25519Key.from_private_key_file(str(key_path))
    assert public.split()[1] == loaded.get_base64()


def test_guest_files_hold_the_key_and_a_root_account() -> None:
    files = reference.guest_files(reference.load_spec(), "ssh-ed25519 AAAA test\n")
    assert files["/root/.ssh/authorized_keys"] == (b"ssh-ed25519 AAAA test\n", 0o600)
    assert files["/etc/passwd"][0].startswith(b"root:x:0:0:root:/root:/bin/sh")
    assert b"/bin/sh" in files["/etc/shells"][0]
    assert files["/etc/udhcpc.script"][1] == 0o755
    assert b"PS1='hil# '" in files["/etc/profile"][0]


def test_load_reference_without_a_build_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path))
    assert reference.load_reference() is None
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference/current").write_text("0123456789abcdef\n")
    assert reference.load_reference() is None  # pointer to a folder that is not there
    assert reference.load_reference_from(tmp_path) is None


# --- the built image ----------------------------------------------------------------------------------

needs_debian = pytest.mark.skipif(
    shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None or shutil.which("depmod") is None,
    reason="building the reference guest needs apt-get, dpkg-deb and depmod",
)


@pytest.fixture(scope="module")
def image() -> reference.ReferenceImage:
    return reference.build_reference(console=Console(quiet=True))


@pytest.fixture(scope="module")
def archive(image: reference.ReferenceImage) -> dict[str, CpioEntry]:
    return {entry.name: entry for entry in read_newc(image.initramfs.read_bytes())}


@needs_debian
@pytest.mark.slow
class TestBuiltImage:
    def test_manifest_describes_the_build(self, image: reference.ReferenceImage) -> None:
        manifest = json.loads((image.root / reference.MANIFEST_NAME).read_text())
        assert manifest == image.manifest
        assert manifest["key"] == image.root.name == image.key
        assert manifest["builder_version"] == reference.BUILDER_VERSION
        assert manifest["kernel_package"] == f"linux-image-{image.kernel_version}"
        names = {package["name"] for package in manifest["packages"]}
        assert set(reference.load_spec().packages) | {manifest["kernel_package"]} == names
        assert all(len(package["sha256"]) == 64 for package in manifest["packages"])
        assert manifest["modules"] == list(reference.load_spec().modules)
        assert manifest["init_sha256"] == reference._sha256(reference.data_text(reference.INIT_NAME).encode())
        for name, digest in manifest["files"].items():
            assert sha256_file(image.root / name) == digest, name
        assert set(manifest["files"]) >= {"vmlinux", "vmlinuz", "initramfs.cpio", "id_ed25519"}

    def test_current_pointer_finds_the_image_without_apt(self, image: reference.ReferenceImage) -> None:
        assert reference.load_reference() == image
        assert reference.load_reference_from(image.root) == image
        assert (image.root.parent / "current").read_text().strip() == image.key

    def test_vmlinux_is_an_elf_with_a_pvh_entry(self, image: reference.ReferenceImage) -> None:
        with image.vmlinux.open("rb") as stream:
            assert stream.read(4) == b"\x7fELF"
        entry = pvh_entry(image.vmlinux.read_bytes(), str(image.vmlinux))
        assert entry is not None and f"{entry:#x}" == image.manifest["pvh_entry"]
        assert image.bzimage.read_bytes()[0x202:0x206] == b"HdrS"

    def test_outputs_are_read_only_and_the_key_private(self, image: reference.ReferenceImage) -> None:
        for path in image.root.iterdir():
            expected = 0o600 if path == image.ssh_key else 0o444
            assert stat.S_IMODE(path.stat().st_mode) == expected, path

    def test_cached_image_is_reused_without_rebuilding(self, image: reference.ReferenceImage) -> None:
        before = image.initramfs.stat().st_mtime_ns
        again = reference.build_reference(console=Console(quiet=True))
        assert again == image
        assert again.initramfs.stat().st_mtime_ns == before

    def test_init_and_device_nodes(self, archive: dict[str, CpioEntry]) -> None:
        assert archive["init"].data.decode() == reference.data_text(reference.INIT_NAME)
        assert stat.S_IMODE(archive["init"].mode) == 0o755
        for name, numbers in {"dev/console": (5, 1), "dev/null": (1, 3), "dev/ttyS0": (4, 64)}.items():
            assert archive[name].is_char_device
            assert (archive[name].rdev_major, archive[name].rdev_minor) == numbers

    def test_every_member_has_its_parent_first(self, archive: dict[str, CpioEntry]) -> None:
        seen: set[str] = set()
        for name in archive:
            parent = os.path.dirname(name)
            assert not parent or parent in seen, name
            seen.add(name)

    def test_authorized_key_matches_the_private_key(
        self, image: reference.ReferenceImage, archive: dict[str, CpioEntry]
    ) -> None:
        key = paramiko.Ed25519Key.from_private_key_file(str(image.ssh_key))
        authorized = archive["root/.ssh/authorized_keys"]
        assert authorized.data.decode().split()[:2] == ["ssh-ed25519", key.get_base64()]
        assert stat.S_IMODE(authorized.mode) == 0o600
        assert stat.S_IMODE(archive["root"].mode) == 0o700

    def test_busybox_dropbear_and_their_libraries(self, archive: dict[str, CpioEntry], tmp_path: Path) -> None:
        assert archive["bin/sh"].link_target == "busybox"
        dropbear = tmp_path / "dropbear"
        dropbear.write_bytes(archive["usr/sbin/dropbear"].data)
        links = read_elf_links(dropbear)
        assert links.interpreter == "/lib64/ld-linux-x86-64.so.2"
        assert _resolve(archive, links.interpreter).is_file
        libraries = {os.path.basename(name) for name in archive if "/lib" in f"/{name}"}
        assert set(links.needed) <= libraries
        assert {"libtomcrypt.so.1", "libc.so.6", "libgmp.so.10"} <= libraries  # libgmp only via libtomcrypt
        for name in archive:
            if os.path.basename(name) in links.needed:
                assert _resolve(archive, "/" + name).is_file

    def test_modules_are_indexed(self, image: reference.ReferenceImage, archive: dict[str, CpioEntry]) -> None:
        prefix = f"lib/modules/{image.kernel_version}"
        dep = archive[f"{prefix}/modules.dep"].data.decode()
        indexed = {line.split(":")[0] for line in dep.splitlines()}
        for module, relative in image.manifest["module_files"].items():
            assert relative in indexed, module
            assert f"{prefix}/{relative}" in archive
            assert canonical_module_name(os.path.basename(relative)[:-3]) == canonical_module_name(module)
        listed = archive["etc/hil/modules"].data.decode().split()
        assert listed == image.manifest["modules"]

    def test_forced_rebuild_is_byte_identical(
        self, image: reference.ReferenceImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A private cache fed from HIL_DEB_DIR (no network) with the same key pair gives the same image."""
        deb_dir = cache_dir() / "debs"
        if not any(deb_dir.glob("*.deb")):
            pytest.skip(f"no cached .debs in {deb_dir}")  # HIL_DEB_DIR supplied the shared build
        private = tmp_path / "cache"
        (private / "reference").mkdir(parents=True)
        shutil.copy2(image.root.parent / reference.KEY_NAME, private / "reference" / reference.KEY_NAME)
        monkeypatch.setenv("HIL_CACHE_DIR", str(private))
        monkeypatch.setenv(DEB_DIR_ENV, str(deb_dir))
        first = reference.build_reference(console=Console(quiet=True))
        assert first.key == image.key
        assert not (private / "debs").exists()  # every package came from HIL_DEB_DIR
        mtime = first.initramfs.stat().st_mtime_ns
        second = reference.build_reference(force=True, console=Console(quiet=True))
        assert second.initramfs.stat().st_mtime_ns != mtime
        for name in ("initramfs.cpio", "vmlinux", "vmlinuz"):
            assert first.manifest["files"][name] == second.manifest["files"][name] == image.manifest["files"][name]
        assert sorted(path.name for path in (private / "reference").iterdir()) == sorted(
            [".lock", image.key, "current", reference.KEY_NAME]
        )


def _resolve(archive: dict[str, CpioEntry], path: str) -> CpioEntry:
    """Follow symlinks inside the archive, as the guest's kernel would."""
    for _ in range(10):
        entry = archive[path.lstrip("/")]
        if not entry.is_symlink:
            return entry
        path = os.path.normpath(os.path.join(os.path.dirname("/" + entry.name), entry.link_target))
    raise AssertionError(f"symlink loop at {path}")


# --- one real boot ------------------------------------------------------------------------------------


class SerialGuest:
    """QEMU with the serial console on a pipe; just enough to watch the boot and type a line."""

    def __init__(self, argv: list[str]) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read1(65536):
            self.output.extend(chunk)

    def wait_for(self, marker: bytes, timeout: float, start: int = 0) -> float:
        deadline = time.monotonic() + timeout
        while marker not in self.output[start:]:
            if time.monotonic() > deadline or self.process.poll() is not None:
                tail = self.output[-3000:].decode(errors="replace")
                raise AssertionError(f"no {marker!r} after {timeout} s; console tail:\n{tail}")
            time.sleep(0.05)
        return time.monotonic() - self.started

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def lines(self) -> list[str]:
        return [line.rstrip("\r") for line in self.output.decode(errors="replace").splitlines()]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def booted(image: reference.ReferenceImage) -> Iterator[tuple[SerialGuest, int]]:
    """One TCG boot with NVMe, USB storage on xHCI, e1000 and a hook overlaid as a second cpio."""
    with tempfile.TemporaryDirectory(prefix="hil-ref-boot-") as scratch:
        folder = Path(scratch)
        for disk in ("nvme.qcow2", "usb.qcow2"):
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(folder / disk), "64M"], check=True)
        overlay = NewcWriter()
        overlay.add_file("/etc/hil.d/50-probe.sh", b"#!/bin/sh\necho probe-hook-ran\nexit 7\n", 0o755)
        initrd = folder / "initrd.cpio"
        # The kernel unpacks concatenated archives in order: this is how tests add files to the guest.
        initrd.write_bytes(image.initramfs.read_bytes() + overlay.to_bytes())
        port = _free_port()
        guest = SerialGuest(_qemu_argv(image, folder, initrd, port))
        try:
            yield guest, port
        finally:
            guest.stop()


def _qemu_argv(image: reference.ReferenceImage, folder: Path, initrd: Path, port: int) -> list[str]:
    return [
        "qemu-system-x86_64",
        *("-machine", "q35", "-accel", "tcg", "-smp", "2", "-m", "512", "-nodefaults"),
        *("-display", "none", "-vga", "none", "-serial", "stdio", "-no-reboot"),
        *("-kernel", str(image.vmlinux), "-initrd", str(initrd)),
        *("-append", "console=ttyS0 nokaslr panic=-1 hil.wait_dev=/dev/sda,/dev/nvme0n1"),
        *("-device", "e1000,netdev=n0", "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"),
        *("-drive", f"file={folder / 'nvme.qcow2'},if=none,id=d0", "-device", "nvme,drive=d0,serial=hil0"),
        *("-device", "qemu-xhci,id=xhci", "-drive", f"file={folder / 'usb.qcow2'},if=none,id=u0"),
        *("-device", "usb-storage,bus=xhci.0,drive=u0", "-device", "pvpanic-pci"),
    ]


needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None, reason="needs QEMU"
)


@needs_debian
@needs_qemu
@pytest.mark.slow
@pytest.mark.qemu
class TestBoot:
    def test_milestones_in_order(self, booted: tuple[SerialGuest, int]) -> None:
        guest, _ = booted
        guest.wait_for(b"HIL-GUEST-READY\r\n", timeout=90)
        milestones = [line for line in guest.lines() if line.startswith("hil-init:") or line == "HIL-GUEST-READY"]
        assert milestones == [
            "hil-init: mounted",
            "hil-init: modules loaded",
            "hil-init: network eth0 10.0.2.15",
            "hil-init: sshd started",
            "hil-init: device /dev/sda present",
            "hil-init: device /dev/nvme0n1 present",
            "hil-init: hook 50-probe.sh exit 7",
            "HIL-GUEST-READY",
        ]
        assert "probe-hook-ran" in guest.lines()

    def test_console_shell_runs_commands(self, booted: tuple[SerialGuest, int]) -> None:
        guest, _ = booted
        guest.wait_for(b"HIL-GUEST-READY\r\n", timeout=90)
        guest.wait_for(b"hil# ", timeout=10)
        mark = len(guest.output)
        long_argument = "x" * 150  # would wrap at 80 columns without the stty in /etc/profile
        guest.type(f"echo A$((40+2))B {long_argument}; tty")
        guest.wait_for(f"A42B {long_argument}\r\n/dev/ttyS0".encode(), timeout=10, start=mark)

    def test_ssh_runs_a_command_and_sees_the_disks(
        self, image: reference.ReferenceImage, booted: tuple[SerialGuest, int]
    ) -> None:
        guest, port = booted
        guest.wait_for(b"HIL-GUEST-READY\r\n", timeout=90)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(
            "127.0.0.1",
            port=port,
            username="root",
            key_filename=str(image.ssh_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=30,
        )
        try:
            _, stdout, _ = client.exec_command("id -u; uname -r; ls /dev/nvme0n1 /dev/sda; lsmod", timeout=30)
            output = stdout.read().decode()
            assert stdout.channel.recv_exit_status() == 0
        finally:
            client.close()
        lines = output.splitlines()
        assert lines[:4] == ["0", image.kernel_version, "/dev/nvme0n1", "/dev/sda"]
        loaded = {line.split()[0] for line in lines[5:]}
        assert {canonical_module_name(name) for name in image.manifest["modules"]} <= loaded
