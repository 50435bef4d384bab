"""Pick a few kernel modules out of an unpacked linux-image package and index them with depmod.

Debian's kernel package ships no modules.dep (postinst runs depmod), so after copying the chosen .ko files
into a small staging tree `depmod -b` writes the index that busybox modprobe reads in the guest.
"""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from hil.errors import InfraError

# Metadata depmod reads besides the .ko files (modules.builtin lets modprobe accept built-in names).
_KEPT_METADATA = ("modules.builtin", "modules.builtin.modinfo")


@dataclass(frozen=True)
class StagedModules:
    kernel_version: str
    files: dict[str, str]  # module name as listed -> path relative to lib/modules/<kver>
    builtin: tuple[str, ...]
    root: Path  # the staging root holding lib/modules/<kver>


def canonical_module_name(name: str) -> str:
    """Kernel module names treat '-' and '_' alike; file names use either."""
    return name.replace("-", "_")


def kernel_version(unpacked: Path) -> str:
    """The one release found under lib/modules of an unpacked kernel package."""
    releases = sorted(path.name for path in (unpacked / "lib" / "modules").glob("*") if path.is_dir())
    if len(releases) != 1:
        raise InfraError(f"expected one kernel release under {unpacked / 'lib/modules'}, found {releases}")
    return releases[0]


def index_modules(modules_dir: Path) -> dict[str, Path]:
    """Canonical module name -> .ko file, for every module in the package."""
    index = {}
    for path in sorted((modules_dir / "kernel").rglob("*.ko*")):
        if path.name.endswith(".ko"):
            index[canonical_module_name(path.name.removesuffix(".ko"))] = path
        else:
            index.setdefault(canonical_module_name(path.name.split(".ko")[0]), path)
    return index


def builtin_modules(modules_dir: Path) -> set[str]:
    builtin = modules_dir / "modules.builtin"
    if not builtin.exists():
        return set()
    names = (Path(line.strip()).name.removesuffix(".ko") for line in builtin.read_text().splitlines())
    return {canonical_module_name(name) for name in names if name}


def stage_modules(unpacked: Path, wanted: list[str], staging: Path) -> StagedModules:
    """Copy the wanted modules to `staging`/lib/modules/<kver> and run depmod there."""
    release = kernel_version(unpacked)
    source_dir = unpacked / "lib" / "modules" / release
    target_dir = staging / "lib" / "modules" / release
    index, builtin = index_modules(source_dir), builtin_modules(source_dir)
    files: dict[str, str] = {}
    built_in_found = []
    for name in wanted:
        path = index.get(canonical_module_name(name))
        if path is None:
            if canonical_module_name(name) in builtin:
                built_in_found.append(name)
                continue
            raise InfraError(f"kernel module {name} is neither a .ko file nor built into kernel {release}")
        if not path.name.endswith(".ko"):
            raise InfraError(f"{path} is compressed; the reference guest's busybox modprobe needs plain .ko")
        relative = path.relative_to(source_dir)
        (target_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target_dir / relative)
        files[name] = str(relative)
    for metadata in _KEPT_METADATA:
        if (source_dir / metadata).exists():
            shutil.copyfile(source_dir / metadata, target_dir / metadata)
    _check_dependencies_listed(files, index, builtin, wanted)
    run_depmod(staging, release)
    return StagedModules(release, files, tuple(built_in_found), staging)


def module_dependencies(ko_file: Path) -> list[str]:
    """The `depends=` names recorded in a module's .modinfo section."""
    try:
        with ko_file.open("rb") as stream:
            section = ELFFile(stream).get_section_by_name(".modinfo")
            data = section.data() if section is not None else b""
    except (ELFError, OSError) as error:
        raise InfraError(f"cannot read kernel module {ko_file}: {error}") from error
    for item in data.split(b"\0"):
        if item.startswith(b"depends="):
            return [name for name in item.removeprefix(b"depends=").decode().split(",") if name]
    return []


def _check_dependencies_listed(
    files: dict[str, str], index: dict[str, Path], builtin: set[str], wanted: list[str]
) -> None:
    """Every dependency must be in the list too, or modprobe would fail in the guest, not here."""
    listed = {canonical_module_name(name) for name in wanted} | builtin
    for name in files:
        missing = [
            dep
            for dep in module_dependencies(index[canonical_module_name(name)])
            if canonical_module_name(dep) not in listed
        ]
        if missing:
            raise InfraError(f"kernel module {name} depends on {', '.join(missing)}, which the module list lacks")


def run_depmod(staging: Path, release: str) -> str:
    """Write modules.dep and friends for `release` under `staging`; returns depmod's warnings."""
    argv = ["depmod", "-b", str(staging), release]
    executable = shutil.which("depmod") or shutil.which("depmod", path="/usr/sbin:/sbin")
    if executable is None:
        raise InfraError("depmod is not installed; it indexes the guest's kernel modules (apt-get install kmod)")
    result = subprocess.run([executable, *argv[1:]], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise InfraError(f"`{' '.join(argv)}` failed with exit code {result.returncode}:\n{output}")
    return result.stderr


def modules_dep_entries(staging: Path, release: str) -> dict[str, list[str]]:
    """modules.dep as {module path: [dependency paths]}."""
    entries = {}
    for line in (staging / "lib" / "modules" / release / "modules.dep").read_text().splitlines():
        module, _, dependencies = line.partition(":")
        entries[module.strip()] = dependencies.split()
    return entries
