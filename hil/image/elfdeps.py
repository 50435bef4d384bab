"""Which files a dynamically linked program needs, looked up inside an unpacked root instead of the host.

Follows the ELF interpreter (PT_INTERP) and DT_NEEDED entries transitively with pyelftools, searching the
Debian multiarch library folders of the unpacked packages, and keeps symlinks as symlinks so the guest gets
the same layout (/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2).
"""

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from hil.errors import InfraError

LIBRARY_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/lib", "/usr/lib")
_MAX_LINK_DEPTH = 40


@dataclass(frozen=True)
class GuestFile:
    """A file to put at `guest_path`: a copy of `source` in the unpacked root, or a symlink to `link`."""

    guest_path: str
    source: Path | None = None
    link: str | None = None


@dataclass(frozen=True)
class ElfLinks:
    interpreter: str | None
    needed: tuple[str, ...]


def read_elf_links(path: Path) -> ElfLinks:
    """PT_INTERP and DT_NEEDED of one ELF file (both empty for a static binary)."""
    try:
        with path.open("rb") as stream:
            elf = ELFFile(stream)
            interpreter = None
            for segment in elf.iter_segments():
                if segment["p_type"] == "PT_INTERP":
                    interpreter = segment.get_interp_name()
            needed = []
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    needed += [tag.needed for tag in section.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
            return ElfLinks(interpreter, tuple(needed))
    except (ELFError, OSError) as error:
        raise InfraError(f"cannot read ELF file {path}: {error}") from error


def _host(root: Path, guest_path: str) -> Path:
    return root / guest_path.lstrip("/")


def _link_target(root: Path, guest_path: str) -> str | None:
    """The guest path a symlink points at (absolute), or None if `guest_path` is not a symlink."""
    host = _host(root, guest_path)
    if not host.is_symlink():
        return None
    target = os.readlink(host)
    return posixpath.normpath(posixpath.join(posixpath.dirname(guest_path), target))


def collect_path(root: Path, guest_path: str, into: dict[str, GuestFile]) -> str:
    """Add `guest_path` (and every symlink hop to its final file) to `into`; returns the final guest path."""
    path = posixpath.normpath(guest_path)
    for _ in range(_MAX_LINK_DEPTH):
        target = _link_target(root, path)
        if target is None:
            if not _host(root, path).is_file():
                raise InfraError(f"{path} is missing from the unpacked packages in {root}")
            into[path] = GuestFile(path, source=_host(root, path))
            return path
        into[path] = GuestFile(path, link=os.readlink(_host(root, path)))
        path = target
    raise InfraError(f"too many symlinks resolving {guest_path} in {root}")


def find_library(root: Path, soname: str) -> str | None:
    """The guest path of a library by its DT_NEEDED name, searched like the dynamic loader would."""
    for folder in LIBRARY_DIRS:
        candidate = posixpath.join(folder, soname)
        if _host(root, candidate).exists():  # exists() follows symlinks, so dangling links are skipped
            return candidate
    return None


def runtime_files(root: Path, programs: list[str]) -> dict[str, GuestFile]:
    """Programs plus everything the dynamic loader will open for them, keyed by guest path."""
    files: dict[str, GuestFile] = {}
    pending = list(programs)
    visited: set[str] = set()
    while pending:
        final = collect_path(root, pending.pop(0), files)
        if final in visited:
            continue
        visited.add(final)
        links = read_elf_links(_host(root, final))
        if links.interpreter:
            pending.append(links.interpreter)
        for soname in links.needed:
            found = find_library(root, soname)
            if found is None:
                raise InfraError(
                    f"{final} needs {soname}, which none of the unpacked packages provides in "
                    f"{', '.join(LIBRARY_DIRS)}; add its Debian package to the reference guest's package list"
                )
            pending.append(found)
    return files
