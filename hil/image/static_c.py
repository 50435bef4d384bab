"""Guest programs hil builds from its own C sources with the host's gcc, as static x86_64 binaries.

A static binary runs in any Linux guest whatever libc it has (or none). Each program's source digest
(sources + flags) goes into the cache key of the images that carry it, so editing a source rebuilds them.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hil.errors import InfraError
from hil.store import atomic_output

COMPILER = "gcc"
CFLAGS = ("-O2", "-static", "-Wall", "-Wextra", "-Werror")
BUILD_TIMEOUT_S = 300
INSTALL_FIX = "apt-get install gcc libc6-dev linux-libc-dev"


@dataclass(frozen=True)
class StaticProgram:
    """One program: a folder of .c/.h sources, the file with main(), and where it goes in the guest."""

    name: str
    source_dir: Path
    main: str
    guest_path: str

    def sources(self) -> list[Path]:
        return sorted(p for p in self.source_dir.iterdir() if p.suffix in (".c", ".h") and p.is_file())

    def digest(self) -> str:
        """sha256 over the sources and flags: changes whenever the built program would."""
        digest = hashlib.sha256(" ".join(CFLAGS).encode() + b"\0")
        for path in self.sources():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def build(self, out_dir: Path) -> Path:
        """Compile into out_dir/NAME; InfraError with gcc's words and the fix when that fails."""
        compiler = shutil.which(COMPILER)
        if compiler is None:
            raise InfraError(f"cannot build {self.name}: {COMPILER} is not installed\n  fix: {INSTALL_FIX}")
        output = out_dir / self.name
        # A temporary name, so an interrupted build never leaves a half-written program behind.
        with atomic_output(output, mode=0o755) as partial:
            run_compiler(self.name, [compiler, *CFLAGS, "-o", str(partial), str(self.source_dir / self.main)])
        return output


def run_compiler(name: str, argv: list[str], timeout: float = BUILD_TIMEOUT_S) -> None:
    """Run a compiler or linker; InfraError with its own words and the install fix when it fails."""
    command = " ".join(argv)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InfraError(f"building {name} took over {timeout:.0f} s\n  command: {command}") from exc
    except OSError as exc:
        raise InfraError(f"cannot run {argv[0]}: {exc}\n  fix: {INSTALL_FIX}") from exc
    if result.returncode != 0:
        said = "\n".join(f"    {line}" for line in (result.stderr or result.stdout).strip().splitlines())
        raise InfraError(
            f"building {name} failed (exit {result.returncode})\n  command: {command}\n"
            f"  compiler said:\n{said or '    (no output)'}\n  fix: {INSTALL_FIX}"
        )
