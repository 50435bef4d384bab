"""The reference guest: Debian's kernel plus a busybox/dropbear initramfs, built offline and cached.

Versions are resolved from the host's apt lists (local and cheap), hashed with everything else that goes
into the image into a cache key, and the image lives in cache_dir()/reference/<key>. A build happens in a
scratch folder beside it and is renamed into place when complete; "current" names the newest key so that
load_reference() needs neither apt nor a build. The SSH key pair is made once and reused by every build.
"""

import contextlib
import hashlib
import json
import os
import shutil
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module, resources
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from hil.cache import CacheArea
from hil.errors import InfraError, UsageError
from hil.guest.tools import NET_TOOL
from hil.image import debs
from hil.image.bzimage import extract_vmlinux
from hil.image.cpio import NewcWriter
from hil.image.elfdeps import GuestFile, runtime_files
from hil.image.kmodules import StagedModules, stage_modules
from hil.image.static_c import StaticProgram
from hil.store import atomic_write
from hil.uring_probe.build import LINUX_PROBE

# Programs hil compiles from its own sources into every reference image.
BUILT_PROGRAMS: tuple[StaticProgram, ...] = (NET_TOOL, LINUX_PROBE)

# Bump whenever the way images are assembled changes, so that cached images built the old way are rebuilt.
BUILDER_VERSION = "2"

SPEC_NAME = "reference.toml"
INIT_NAME = "reference-init.sh"
UDHCPC_NAME = "reference-udhcpc.sh"
CURRENT_NAME = "current"
KEY_NAME = "id_ed25519"
MANIFEST_NAME = "manifest.json"
VMLINUX_NAME = "vmlinux"
BZIMAGE_NAME = "vmlinuz"
INITRAMFS_NAME = "initramfs.cpio"
MODULE_LIST_PATH = "/etc/hil/modules"
EXTRAS_DIR = "extras"

# One lock per area: the key is known only once apt has been asked, under the lock.
WAITING = "Waiting for another hil process building the reference guest"
IMAGES = CacheArea("reference", WAITING, private=True)  # private: it holds the SSH private key
EXTRA_IMAGES = CacheArea(f"reference/{EXTRAS_DIR}", WAITING, private=True)
DEBS = CacheArea("debs")  # downloaded only by builds of the reference guest, so under its lock

# Optional additions to the reference image, by name -> "module:factory" returning an ImageExtra. They are
# imported only when asked for: the default image, its cache key and its build never depend on them.
EXTRAS: dict[str, str] = {"tokio": "hil.tokio.build:tokio_extra"}

_PROFILE = """\
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root PS1='hil# '
# A serial console has no size (0x0), so ash would wrap typed lines at 80 columns and echo them mangled.
# Busybox stty refuses 0 rows. SSH sessions keep the size their client sets.
case "$(tty 2>/dev/null)" in
/dev/console | /dev/ttyS*) stty cols 4096 rows 50 2>/dev/null ;;
esac
"""

_STATIC_ETC = {
    "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "/etc/group": "root:x:0:\n",
    "/etc/shells": "/bin/sh\n/bin/ash\n",
    "/etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
    "/etc/hosts": "127.0.0.1 localhost\n127.0.1.1 hil\n",
    "/etc/hostname": "hil\n",
    "/etc/profile": _PROFILE,
}


@dataclass(frozen=True)
class ReferenceSpec:
    """What reference.toml asks for."""

    kernel_package: str
    modules: tuple[str, ...]
    packages: tuple[str, ...]
    programs: tuple[str, ...]


@dataclass(frozen=True)
class ReferenceImage:
    """A complete, read-only reference guest in the cache."""

    root: Path
    vmlinux: Path
    bzimage: Path
    initramfs: Path
    ssh_key: Path
    kernel_version: str
    manifest: dict = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        return self.manifest["key"]


@dataclass(frozen=True)
class ExtraOverlay:
    """What an extra adds: a cpio laid over the base initramfs, and the key that names its content."""

    name: str
    key: str
    overlay: Path
    info: dict = field(compare=False, repr=False)


class ImageExtra(Protocol):
    name: str

    def build(self, force: bool, console: Console) -> ExtraOverlay:
        """Find the extra's overlay in its own cache, or build it now."""
        ...


@dataclass(frozen=True)
class BuildPlan:
    """Everything that decides the image's content, resolved before anything is downloaded."""

    spec: ReferenceSpec
    kernel_package: str
    versions: dict[str, str]  # every package to unpack, the concrete kernel package included
    guest_files: dict[str, tuple[bytes, int]]  # fixed files of the initramfs: path -> (content, mode)
    init_script: str
    key: str


def data_text(name: str) -> str:
    """A file of hil/image/data, read through importlib so it also works from an installed wheel."""
    return resources.files("hil.image").joinpath("data", name).read_text()


def load_spec() -> ReferenceSpec:
    spec = tomllib.loads(data_text(SPEC_NAME))
    try:
        return ReferenceSpec(
            kernel_package=spec["kernel"]["package"],
            modules=tuple(spec["kernel"]["modules"]),
            packages=tuple(spec["packages"]["names"]),
            programs=tuple(spec["packages"]["programs"]),
        )
    except KeyError as error:
        raise InfraError(f"hil's {SPEC_NAME} lacks the key {error}; the installation is broken") from error


def reference_base() -> Path:
    return IMAGES.root


def cache_key(
    packages: Mapping[str, str],
    modules: Sequence[str],
    init_script: str,
    guest_files: Mapping[str, bytes] | None = None,
    programs: Sequence[str] = (),
    built: Mapping[str, str] | None = None,
) -> str:
    """16 hex digits naming an image: changes with any package version, module, program or guest file."""
    inputs = {
        "builder": BUILDER_VERSION,
        "packages": sorted(f"{name}={version}" for name, version in packages.items()),
        "modules": list(modules),
        "init": init_script,
        "files": {path: _sha256(data) for path, data in sorted((guest_files or {}).items())},
        "programs": list(programs),
        "built": dict(sorted((built or {}).items())),
    }
    return _sha256(json.dumps(inputs, sort_keys=True).encode())[:16]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_ssh_key(path: Path) -> str:
    """Create the Ed25519 key pair once (private key 0600, OpenSSH format); returns the public key line."""
    if not path.exists():
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        atomic_write(path, pem, mode=0o600)
    try:
        private = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (ValueError, OSError) as error:
        raise InfraError(f"cannot read hil's SSH key {path}: {error}; delete it to make a new one") from error
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode() + " hil-reference-guest\n"


def guest_files(spec: ReferenceSpec, public_key: str) -> dict[str, tuple[bytes, int]]:
    """The initramfs files hil writes itself, besides /init and what comes from packages."""
    files = {path: (text.encode(), 0o644) for path, text in _STATIC_ETC.items()}
    files["/etc/udhcpc.script"] = (data_text(UDHCPC_NAME).encode(), 0o755)
    files[MODULE_LIST_PATH] = ("".join(f"{name}\n" for name in spec.modules).encode(), 0o644)
    files["/root/.ssh/authorized_keys"] = (public_key.encode(), 0o600)
    return files


def plan_build(spec: ReferenceSpec, public_key: str) -> BuildPlan:
    """Resolve versions with apt-cache and compute the cache key; touches nothing."""
    # One apt-cache call for every version, one more to follow the kernel meta package.
    candidates = debs.candidate_versions([spec.kernel_package, *spec.packages])
    kernel_package, kernel_version = debs.resolve_kernel_package(
        spec.kernel_package, candidates.pop(spec.kernel_package)
    )
    versions = {kernel_package: kernel_version, **candidates}
    files = guest_files(spec, public_key)
    init_script = data_text(INIT_NAME)
    contents = {path: content for path, (content, _) in files.items()}
    built = {program.name: program.digest() for program in BUILT_PROGRAMS}
    key = cache_key(versions, spec.modules, init_script, contents, spec.programs, built)
    return BuildPlan(spec, kernel_package, versions, files, init_script, key)


def load_reference() -> ReferenceImage | None:
    """The image "current" points at, without asking apt or building; None if there is none."""
    try:
        key = (reference_base() / CURRENT_NAME).read_text().strip()
    except OSError:
        return None
    return load_reference_from(reference_base() / key) if key else None


def load_reference_from(root: Path) -> ReferenceImage | None:
    """The image in folder `root` (as made by build_reference), or None if it is incomplete or stale."""
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    image = ReferenceImage(
        root=root,
        vmlinux=root / VMLINUX_NAME,
        bzimage=root / BZIMAGE_NAME,
        initramfs=root / INITRAMFS_NAME,
        ssh_key=root / KEY_NAME,
        kernel_version=manifest.get("kernel_version", ""),
        manifest=manifest,
    )
    complete = all(path.is_file() for path in (image.vmlinux, image.bzimage, image.initramfs, image.ssh_key))
    return image if complete and manifest.get("builder_version") == BUILDER_VERSION else None


def build_reference(force: bool = False, console: Console | None = None, extras: Sequence[str] = ()) -> ReferenceImage:
    """The reference guest for the current package versions: cached if present, else built now.

    With `extras` (e.g. ("tokio",)) the result is a separate image in reference/extras/<key>: the same
    kernel, and the base initramfs with each extra's overlay appended. The default image stays as it is.
    """
    console = console or Console(stderr=True)
    wanted = [load_extra(name) for name in dict.fromkeys(extras)]
    with IMAGES.lock(console=console):
        spec = load_spec()
        public_key = ensure_ssh_key(IMAGES.root / KEY_NAME)
        with console.status("Resolving package versions with apt-cache"):
            plan = plan_build(spec, public_key)
        image = None if force else load_reference_from(IMAGES.path(plan.key))
        if image is None:
            image = _build(plan, console)
        atomic_write(IMAGES.root / CURRENT_NAME, f"{plan.key}\n", mode=0o644)
    if not wanted:
        return image
    return _with_extras(image, [extra.build(force, console) for extra in wanted], force, console)


def load_extra(name: str) -> ImageExtra:
    """The extra called `name`, imported on demand; UsageError naming the known ones otherwise."""
    if name not in EXTRAS:
        raise UsageError(f"unknown reference image extra {name!r}; known: {', '.join(sorted(EXTRAS))}")
    module, factory = EXTRAS[name].split(":")
    return getattr(import_module(module), factory)()


def extras_key(base_key: str, extra_keys: Mapping[str, str]) -> str:
    return _sha256(json.dumps({"base": base_key, "extras": dict(sorted(extra_keys.items()))}).encode())[:16]


def _with_extras(image: ReferenceImage, extras: list[ExtraOverlay], force: bool, console: Console) -> ReferenceImage:
    """The base image plus the extras' overlays, in a folder of its own keyed by all of them."""
    key = extras_key(image.key, {extra.name: extra.key for extra in extras})
    with EXTRA_IMAGES.lock(console=console):
        existing = None if force else load_reference_from(EXTRA_IMAGES.path(key))
        if existing is not None:
            return existing
        with EXTRA_IMAGES.scratch(key) as scratch:
            _assemble_with_extras(image, extras, key, scratch)
            EXTRA_IMAGES.publish(scratch, key)
    built = load_reference_from(EXTRA_IMAGES.path(key))
    if built is None:
        raise InfraError(f"the reference guest with extras in {EXTRA_IMAGES.path(key)} is incomplete")
    console.print(f"[green]Reference guest {key}: {image.key} + {', '.join(e.name for e in extras)}")
    return built


def _assemble_with_extras(image: ReferenceImage, extras: list[ExtraOverlay], key: str, output: Path) -> None:
    """Link the unchanged files (no copies of the kernel), append the overlays to the initramfs."""
    for name in (VMLINUX_NAME, BZIMAGE_NAME, KEY_NAME, f"{KEY_NAME}.pub"):
        _link_or_copy(image.root / name, output / name)
    with (output / INITRAMFS_NAME).open("wb") as joined:
        for part in (image.initramfs, *(extra.overlay for extra in extras)):
            with part.open("rb") as stream:
                shutil.copyfileobj(stream, joined, 1 << 20)
    manifest = dict(image.manifest)
    manifest.update(key=key, base_key=image.key, extras={extra.name: extra.info for extra in extras})
    manifest["files"] = {path.name: debs.sha256_file(path) for path in sorted(output.iterdir())}
    (output / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    _make_read_only(output)


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another filesystem, or links not allowed: a copy does as well
        shutil.copy2(source, destination)


def _build(plan: BuildPlan, console: Console) -> ReferenceImage:
    started = time.monotonic()
    with IMAGES.scratch(plan.key) as scratch:
        output = scratch / "image"  # beside the work folders (unpacked packages, modules), which are not kept
        output.mkdir()
        manifest = _assemble(plan, scratch, output, IMAGES.root, console)
        IMAGES.publish(output, plan.key)
    console.print(f"[green]Built the reference guest {plan.key} in {time.monotonic() - started:.1f} s")
    image = load_reference_from(IMAGES.path(plan.key))
    if image is None:
        raise InfraError(f"the reference guest built in {IMAGES.path(plan.key)} is incomplete: {manifest['files']}")
    return image


def _assemble(plan: BuildPlan, scratch: Path, output: Path, base: Path, console: Console) -> dict:
    """Download, unpack and put together every output file; returns the manifest it wrote."""
    packages = _fetch_all(plan.versions, console)
    unpacked = scratch / "unpacked"
    _unpack_all(packages, unpacked, console)
    with _step(console, "Extracting vmlinux from the kernel's bzImage"):
        release, entry = _kernel_files(unpacked, output)
    with _step(console, "Indexing kernel modules with depmod"):
        modules = stage_modules(unpacked, list(plan.spec.modules), scratch / "modules")
    if modules.kernel_version != release:
        raise InfraError(f"kernel {release} ships modules for {modules.kernel_version}")
    with _step(console, f"Compiling {', '.join(p.name for p in BUILT_PROGRAMS)} with gcc"):
        built = {program.guest_path: program.build(scratch / "built") for program in BUILT_PROGRAMS}
    with _step(console, "Writing the initramfs"):
        runtime = runtime_files(unpacked, list(plan.spec.programs))
        _write_initramfs(plan, runtime, modules, built, output / INITRAMFS_NAME)
    shutil.copyfile(base / KEY_NAME, output / KEY_NAME)
    (output / f"{KEY_NAME}.pub").write_bytes(plan.guest_files["/root/.ssh/authorized_keys"][0])
    manifest = _manifest(plan, packages, modules, runtime, output, entry)
    manifest["built_programs"] = {
        program.name: {"guest_path": program.guest_path, "source_sha256": program.digest(),
                       "sha256": debs.sha256_file(built[program.guest_path])}
        for program in BUILT_PROGRAMS
    }  # fmt: skip
    (output / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    _make_read_only(output)
    return manifest


@contextlib.contextmanager
def _step(console: Console, title: str) -> Iterator[None]:
    started = time.monotonic()
    with console.status(title):
        yield
    console.print(f"  {title}: done in {time.monotonic() - started:.1f} s")


def _fetch_all(versions: dict[str, str], console: Console) -> list[debs.DebPackage]:
    """The .debs from HIL_DEB_DIR or the cache, downloading the missing ones."""
    cache = DEBS.root
    missing = debs.missing_packages(versions, cache)
    if missing:
        DEBS.remove_leftovers()  # of downloads killed halfway
        with _step(console, f"Downloading {len(missing)} Debian packages with apt-get"):
            debs.download(missing, cache)
    packages = debs.fetch_all(versions, cache)
    total = sum(package.path.stat().st_size for package in packages)
    console.print(f"  {len(packages)} Debian packages ready ({total / 1e6:.1f} MB)")
    return packages


def _unpack_all(packages: list[debs.DebPackage], destination: Path, console: Console) -> None:
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    sizes = {package.name: package.path.stat().st_size for package in packages}
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("Unpacking", total=sum(sizes.values()))
        for package in packages:
            progress.update(task, description=f"Unpacking {package.name}")
            debs.extract(package.path, destination)
            progress.advance(task, sizes[package.name])
    console.print(f"  Unpacked {len(packages)} packages with dpkg-deb")


def _kernel_files(unpacked: Path, output: Path) -> tuple[str, int]:
    """Copy the bzImage and extract vmlinux; returns the kernel release and the PVH entry address."""
    images = sorted((unpacked / "boot").glob("vmlinuz-*"))
    if len(images) != 1:
        raise InfraError(f"expected one boot/vmlinuz-* in the kernel package, found {[p.name for p in images]}")
    shutil.copyfile(images[0], output / BZIMAGE_NAME)
    entry = extract_vmlinux(images[0], output / VMLINUX_NAME)
    return images[0].name.removeprefix("vmlinuz-"), entry


def _write_initramfs(
    plan: BuildPlan, runtime: dict[str, GuestFile], modules: StagedModules, built: dict[str, Path], destination: Path
) -> None:
    archive = NewcWriter()
    _add_skeleton(archive)
    archive.add_file("/init", plan.init_script.encode(), 0o755)
    archive.add_symlink("/bin/sh", "busybox")
    for path, (content, mode) in sorted(plan.guest_files.items()):
        archive.add_file(path, content, mode)
    for path, item in runtime.items():
        if item.link is not None:
            archive.add_symlink(path, item.link)
        else:
            assert item.source is not None
            archive.add_host_file(path, item.source, 0o755)
    for guest_path, host_path in sorted(built.items()):
        archive.add_host_file(guest_path, host_path, 0o755)
    _add_tree(archive, modules.root, "lib/modules")
    with destination.open("wb") as stream:
        archive.write_to(stream)


def _add_skeleton(archive: NewcWriter) -> None:
    """Folders and the device nodes the kernel needs before /init mounts devtmpfs."""
    for folder in ("bin", "sbin", "usr/bin", "usr/sbin", "lib", "proc", "sys", "dev", "run", "mnt", "var/log"):
        archive.add_dir(folder)
    archive.add_dir("tmp", 0o1777)
    archive.add_dir("root", 0o700)
    archive.add_dir("root/.ssh", 0o700)
    archive.add_dir("etc/dropbear", 0o700)
    archive.add_dir("etc/hil.d")
    # The kernel opens /dev/console as init's stdin/stdout/stderr before init runs.
    archive.add_char_device("dev/console", 5, 1, 0o600)
    archive.add_char_device("dev/null", 1, 3, 0o666)
    archive.add_char_device("dev/ttyS0", 4, 64, 0o660)


def _add_tree(archive: NewcWriter, root: Path, below: str) -> None:
    """Add root/below and everything under it, in sorted order so the archive is deterministic."""
    top = root / below
    for path in [top, *sorted(top.rglob("*"))]:
        name = str(path.relative_to(root))
        if path.is_symlink():
            archive.add_symlink(name, os.readlink(path))
        elif path.is_dir():
            archive.add_dir(name)
        else:
            archive.add_host_file(name, path, 0o644)


def _manifest(
    plan: BuildPlan,
    packages: list[debs.DebPackage],
    modules: StagedModules,
    runtime: dict[str, GuestFile],
    output: Path,
    pvh_entry: int,
) -> dict:
    files = sorted(path.name for path in output.iterdir())
    return {
        "builder_version": BUILDER_VERSION,
        "key": plan.key,
        "kernel_version": modules.kernel_version,
        "kernel_package": plan.kernel_package,
        "pvh_entry": f"{pvh_entry:#x}",
        "packages": [{"name": p.name, "version": p.version, "sha256": p.sha256, "deb": p.path.name} for p in packages],
        "modules": list(plan.spec.modules),
        "module_files": modules.files,
        "builtin_modules": list(modules.builtin),
        "programs": list(plan.spec.programs),
        "runtime_files": sorted(runtime),
        "init_sha256": _sha256(plan.init_script.encode()),
        "public_key": plan.guest_files["/root/.ssh/authorized_keys"][0].decode().strip(),
        "files": {name: debs.sha256_file(output / name) for name in files},
    }


def _make_read_only(output: Path) -> None:
    """Base images are shared by every run and never written; only the private key stays 0600."""
    for path in output.iterdir():
        path.chmod(0o600 if path.name == KEY_NAME else 0o444)


def reference_command(force: bool, console: Console | None = None, extras: Sequence[str] = ()) -> int:
    """`hil image reference [--force] [--with tokio]`: build (or find) the image and show where its files are."""
    console = console or Console()
    image = build_reference(force=force, console=console, extras=extras)
    console.print(f"[bold]Reference guest {image.key}[/bold] (kernel {image.kernel_version})")
    for name, info in image.manifest.get("extras", {}).items():
        summary = info.get("summary") or json.dumps(info)
        console.print(f"  extra {name}: {summary}", soft_wrap=True, markup=False, highlight=False)
    # Plain lines rather than a table: paths must stay whole for copying, whatever the terminal width.
    for label, value in (
        ("vmlinux (PVH -kernel)", image.vmlinux),
        ("bzImage", image.bzimage),
        ("initramfs", image.initramfs),
        ("SSH private key", image.ssh_key),
        ("manifest", image.root / MANIFEST_NAME),
        ("SSH public key", image.manifest["public_key"]),
    ):
        console.print(f"  {label + ':':<23}{value}", soft_wrap=True, markup=False, highlight=False)
    return 0
