"""What the host needs to build tokio's examples: cargo and Debian's packaged crates, said in a few lines.

Missing pieces are Debian packages. hil installs them when asked (HIL_INSTALL_MISSING=1, or a yes at the
prompt on a terminal), the way scripts/bootstrap installs QEMU; otherwise it says what to install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from hil.errors import InfraError
from hil.tokio.examples import CRATES, Crate
from hil.tokio.source import DEBIAN_REGISTRY

INSTALL_ENV = "HIL_INSTALL_MISSING"
APT_TIMEOUT_S = 1800


def missing_packages(registry: Path = DEBIAN_REGISTRY) -> list[str]:
    """The Debian packages to install before the examples can build: cargo, then the crates, sorted."""
    available = available_crates(registry)
    crates = sorted({crate.debian_package for crate in CRATES.values() if not has_crate(available, crate)})
    return ([] if shutil.which("cargo") else ["cargo"]) + crates


def available_crates(registry: Path = DEBIAN_REGISTRY) -> dict[str, list[str]]:
    """Crate name -> versions unpacked by Debian's librust-*-dev packages."""
    crates: dict[str, list[str]] = {}
    for path in sorted(registry.glob("*-*")):
        match = re.fullmatch(r"(.+)-(\d+\.\d+\.\d+\S*)", path.name)
        if match and path.is_dir():
            crates.setdefault(match.group(1), []).append(match.group(2))
    return crates


def has_crate(available: dict[str, list[str]], crate: Crate) -> bool:
    return any(_compatible(crate.requirement, version) for version in available.get(crate.name, []))


def _compatible(requirement: str, version: str) -> bool:
    """Cargo's caret rule for the simple requirements hil uses ("1", "0.7")."""
    wanted = requirement.split(".")
    have = version.split(".")
    significant = 1 if wanted[0] != "0" else 2
    return have[:significant] == wanted[:significant]


def missing_message(missing: list[str]) -> str:
    """A few lines: what is missing, the command that fixes it, and how to let hil run it."""
    crates = [name for name in missing if name != "cargo"]
    lacks = []
    if "cargo" in missing:
        lacks.append("cargo (the Rust compiler and build tool)")
    if crates:
        lacks.append(f"{len(crates)} of Debian's crate packages ({DEBIAN_REGISTRY} is their home)")
    return "\n".join([
        "tokio's examples cannot be built on this host: it lacks",
        *(f"  - {what}" for what in lacks),
        f"  fix: apt-get install {' '.join(missing)}",
        f"  or let hil install them: {INSTALL_ENV}=1 hil run tokio-examples",
    ])  # fmt: skip


def ensure_toolchain(console: Console, registry: Path = DEBIAN_REGISTRY) -> None:
    """Return when the examples can be built; install what is missing if the user wants that, else say it."""
    missing = missing_packages(registry)
    if not missing:
        return
    if os.environ.get(INSTALL_ENV) == "1" or _user_agrees(missing, console):
        install(missing, console)
        still = missing_packages(registry)
        if still:
            raise InfraError(f"apt-get ran, yet {' '.join(still)} are still missing")
        return
    raise InfraError(missing_message(missing))


def _user_agrees(missing: list[str], console: Console) -> bool:
    if not (sys.stdin.isatty() and console.is_terminal):
        return False
    console.print(missing_message(missing).split("\n  or let")[0])
    answer = console.input(f"Install these {len(missing)} packages with apt-get now? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def install(packages: list[str], console: Console) -> None:
    """apt-get install, as root or through sudo, its output shown as it comes (it takes a minute or more)."""
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    if prefix and shutil.which("sudo") is None:
        raise InfraError(f"installing {' '.join(packages)} needs root, and sudo is not installed")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    console.print(f"hil: {' '.join(argv)}", soft_wrap=True)
    try:
        done = subprocess.run(argv, env=env, timeout=APT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise InfraError(f"apt-get install failed: {err}") from err
    if done.returncode != 0:
        raise InfraError(f"apt-get install exited with {done.returncode} (try `apt-get update` first)")
