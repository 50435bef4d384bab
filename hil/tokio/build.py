"""tokio's examples as static Linux binaries, built offline with Debian's packaged crates, cached by inputs.

Upstream's examples/Cargo.toml uses path dependencies into tokio's workspace (and windows-sys), so hil
writes its own manifest into a build folder: one package with an empty library, the examples as
[[example]] targets and, as dependencies, only the crates the buildable examples use. Cargo reads crates
from /usr/share/cargo/registry (`replace-with = "debian"`); `--target` keeps proc-macros (built for the
host) apart from the static target code (`+crt-static`), which fails to link proc-macros otherwise.

The cache key covers hil's manifest, the resolved Cargo.lock (crate versions and checksums), the pinned
sources' digests, rustc's version and the flags; results live in cache_dir()/tokio/<key>: bin/<example>,
manifest.json (built and not built, with reasons) and tokio-examples.cpio, an overlay for the reference
guest's initramfs that puts the binaries in /usr/lib/hil/tokio-examples.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from hil.cache import CacheArea
from hil.errors import InfraError
from hil.image.cpio import NewcWriter
from hil.image.reference import ExtraOverlay
from hil.tokio.examples import (
    CRATES,
    DEBIAN_PACKAGES,
    EXAMPLES,
    GUEST_DIR,
    TOKIO_COMMIT,
    TOKIO_TAG,
    Crate,
    Example,
)
from hil.tokio.source import DEBIAN_REGISTRY, example_sources
from hil.tokio.toolchain import available_crates, ensure_toolchain, has_crate

BUILD_VERSION = "1"  # bump when the way the examples are built changes
RUST_TARGET = "x86_64-unknown-linux-gnu"
RUSTFLAGS = "-C target-feature=+crt-static"
CARGO_TIMEOUT_S = 1800
OVERLAY_NAME = "tokio-examples.cpio"
MANIFEST_NAME = "manifest.json"
INSTALL_FIX = f"apt-get install cargo {' '.join(DEBIAN_PACKAGES)}"
TARGET_DIR = "target"  # cargo's, kept in the area between builds: the crates compile once
# One lock for the area: the key is known only once cargo has resolved the crates, under the lock.
BUILDS = CacheArea("tokio", "Waiting for another hil process building tokio's examples", private=True)

_CARGO_CONFIG = f"""\
# Written by hil: crates come from Debian's packages only (crates.io is never asked).
[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "{DEBIAN_REGISTRY}"

[net]
offline = true
"""


@dataclass(frozen=True)
class TokioPlan:
    """What a build will produce, decided before compiling anything."""

    buildable: tuple[Example, ...]
    unbuildable: dict[str, str]  # example -> why hil cannot build it here
    manifest: str
    lockfile: str
    rustc: str
    key: str


@dataclass(frozen=True)
class TokioBuild:
    """A finished build in the cache."""

    root: Path
    manifest: dict = field(repr=False)

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def overlay(self) -> Path:
        return self.root / OVERLAY_NAME

    @property
    def built(self) -> list[str]:
        return sorted(self.manifest["built"])

    @property
    def not_built(self) -> dict[str, str]:
        return dict(self.manifest["not_built"])

    def binary(self, name: str) -> Path:
        return self.root / "bin" / name


def tokio_base() -> Path:
    return BUILDS.root


# --- planning -------------------------------------------------------------------------------------------


def plan_build(examples: Sequence[Example] | None = None) -> TokioPlan:
    """Resolve crates with cargo (offline, under a second) and compute the cache key."""
    examples = tuple(examples or EXAMPLES)
    available = available_crates()
    unbuildable = {example.name: example.skip_reason for example in examples if not example.applies}
    buildable: list[Example] = []
    for example in (example for example in examples if example.applies):
        missing = [CRATES[name] for name in example.crates if not has_crate(available, CRATES[name])]
        if missing:
            unbuildable[example.name] = _missing_reason(missing)
        else:
            buildable.append(example)
    manifest = cargo_manifest(buildable)
    with tempfile.TemporaryDirectory(prefix="hil-tokio-lock-") as folder:
        lockfile = _resolve(Path(folder), manifest)
    rustc = _tool_version("rustc")
    key = _key(buildable, unbuildable, manifest, lockfile, rustc)
    return TokioPlan(tuple(buildable), unbuildable, manifest, lockfile, rustc, key)


def _missing_reason(missing: list[Crate]) -> str:
    names = ", ".join(f"{crate.name} {crate.requirement}" for crate in missing)
    packages = " ".join(crate.debian_package for crate in missing)
    return f"needs crate {names}, not in {DEBIAN_REGISTRY} (fix: apt-get install {packages})"


def cargo_manifest(examples: Sequence[Example]) -> str:
    """hil's own Cargo.toml for the examples: only the dependencies they use, none by path."""
    used = sorted({name for example in examples for name in example.crates})
    lines = [
        "# Written by hil: tokio's examples (" + TOKIO_TAG + ") against Debian's packaged crates.",
        "[package]",
        'name = "hil-tokio-examples"',
        'version = "0.0.0"',
        'edition = "2021"',
        "publish = false",
        "",
        "[workspace]",
        "",
        "[dependencies]",
        *(CRATES[name].manifest_line() for name in used),
        "",
        "[profile.release]",
        "strip = true",  # the initramfs carries every binary: keep them small
    ]
    for example in examples:
        lines += ["", "[[example]]", f'name = "{example.name}"', f'path = "examples/{example.file}"']
    return "\n".join(lines) + "\n"


def _write_project(folder: Path, manifest: str) -> None:
    (folder / ".cargo").mkdir(parents=True, exist_ok=True)
    (folder / ".cargo" / "config.toml").write_text(_CARGO_CONFIG)
    (folder / "src").mkdir(exist_ok=True)
    (folder / "src" / "lib.rs").write_text("// The examples are the targets; cargo wants a library or binary.\n")
    (folder / "Cargo.toml").write_text(manifest)


def _resolve(folder: Path, manifest: str) -> str:
    _write_project(folder, manifest)
    _cargo(folder, ["generate-lockfile", "--offline"], "resolving the examples' crates")
    return (folder / "Cargo.lock").read_text()


def _tool_version(tool: str) -> str:
    try:
        done = subprocess.run([tool, "-vV"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        raise InfraError(f"cannot run {tool}: {err}\n  fix: {INSTALL_FIX} (or install Rust with rustup)") from err
    return done.stdout.strip()


def _key(examples: Sequence[Example], unbuildable: dict[str, str], manifest: str, lockfile: str, rustc: str) -> str:
    inputs = {
        "builder": BUILD_VERSION,
        "tokio": TOKIO_COMMIT,
        "sources": {example.file: example.sha256 for example in examples},
        "unbuildable": unbuildable,
        "manifest": manifest,
        "lock": lockfile,
        "rustc": rustc,
        "rustflags": RUSTFLAGS,
        "target": RUST_TARGET,
        "guest_dir": GUEST_DIR,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


# --- building -------------------------------------------------------------------------------------------


def load_build(key: str) -> TokioBuild | None:
    root = BUILDS.path(key)
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    build = TokioBuild(root, manifest)
    complete = build.overlay.is_file() and all(build.binary(name).is_file() for name in build.built)
    return build if complete and manifest.get("builder_version") == BUILD_VERSION else None


def build_examples(
    examples: Sequence[Example] | None = None, force: bool = False, console: Console | None = None
) -> TokioBuild:
    """The examples for the current crates and compiler: from the cache, or built now (minutes the first time)."""
    console = console or Console(stderr=True)
    ensure_toolchain(console)
    with BUILDS.lock(console=console):
        with console.status("Resolving the tokio examples' crates with cargo"):
            plan = plan_build(examples)
        cached = None if force else load_build(plan.key)
        return cached or _build(plan, console)


def _build(plan: TokioPlan, console: Console) -> TokioBuild:
    if not plan.buildable:
        reasons = "\n".join(f"  {name}: {why}" for name, why in sorted(plan.unbuildable.items()))
        raise InfraError(f"none of tokio's examples can be built here:\n{reasons}\n  fix: {INSTALL_FIX}")
    started = time.monotonic()
    with BUILDS.scratch(plan.key) as scratch:
        output = scratch / "out"  # beside the cargo project, which is not kept
        (output / "bin").mkdir(parents=True)
        project = scratch / "project"
        _prepare_project(project, plan, console)
        failures = _compile_all(project, plan, output / "bin", BUILDS.root / TARGET_DIR, console)
        manifest = _manifest(plan, failures, output)
        (output / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        _write_overlay(output, manifest)
        BUILDS.publish(output, plan.key)
    console.print(f"[green]Built tokio's examples {plan.key} in {time.monotonic() - started:.0f} s")
    build = load_build(plan.key)
    if build is None:
        raise InfraError(f"the tokio examples built in {BUILDS.path(plan.key)} are incomplete")
    return build


def _prepare_project(project: Path, plan: TokioPlan, console: Console) -> None:
    """hil's manifest, the lockfile the key was computed from, and the verified example sources."""
    with console.status(f"Finding tokio's examples at {TOKIO_TAG}"):
        sources = example_sources(plan.buildable)
    _write_project(project, plan.manifest)
    (project / "Cargo.lock").write_text(plan.lockfile)
    (project / "examples").mkdir()
    for example in plan.buildable:
        shutil.copyfile(sources / example.file, project / "examples" / example.file)


def _compile_all(project: Path, plan: TokioPlan, bin_dir: Path, target_dir: Path, console: Console) -> dict[str, str]:
    """Build each example on its own, so one that fails does not take the others down; returns the failures."""
    failures: dict[str, str] = {}
    for number, example in enumerate(plan.buildable, start=1):
        started = time.monotonic()
        title = f"Compiling tokio example {example.name} ({number}/{len(plan.buildable)}) with cargo"
        with console.status(title + (" (the crates too: a few minutes)" if number == 1 else "")):
            problem = _compile(project, example.name, target_dir)
        if problem:
            failures[example.name] = problem
            console.print(f"  [red]{example.name}: not built[/] ({problem.splitlines()[0]})")
            continue
        built = target_dir / RUST_TARGET / "release" / "examples" / example.name
        shutil.copyfile(built, bin_dir / example.name)
        (bin_dir / example.name).chmod(0o755)
        console.print(f"  {example.name}: built in {time.monotonic() - started:.1f} s")
    return failures


def _compile(project: Path, example: str, target_dir: Path) -> str:
    """Empty when the example built; otherwise the compiler's first errors."""
    argv = ["build", "--offline", "--locked", "--release", "--target", RUST_TARGET, "--example", example]
    try:
        _cargo(project, argv, f"building {example}", target_dir)
    except InfraError as err:
        return str(err)
    return ""


def _cargo(folder: Path, args: list[str], what: str, target_dir: Path | None = None) -> None:
    cargo = shutil.which("cargo")
    if cargo is None:
        raise InfraError(f"{what}: cargo is not installed\n  fix: {INSTALL_FIX} (or install Rust with rustup)")
    env = {**os.environ, "RUSTFLAGS": RUSTFLAGS, "CARGO_TERM_COLOR": "never", "CARGO_NET_OFFLINE": "true"}
    if target_dir is not None:
        env["CARGO_TARGET_DIR"] = str(target_dir)
    try:
        done = subprocess.run([cargo, *args], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=CARGO_TIMEOUT_S, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as err:
        raise InfraError(f"{what}: cargo took over {CARGO_TIMEOUT_S} s") from err
    if done.returncode != 0:
        raise InfraError(f"{what} failed: {_first_errors(done.stderr)}\n  fix: {INSTALL_FIX}")


def _first_errors(stderr: str, count: int = 3) -> str:
    errors = [line.strip() for line in stderr.splitlines() if line.startswith("error")]
    return "; ".join(errors[:count]) or stderr.strip()[-500:] or "(cargo printed nothing)"


def _manifest(plan: TokioPlan, failures: dict[str, str], output: Path) -> dict:
    built = [example for example in plan.buildable if example.name not in failures]
    return {
        "builder_version": BUILD_VERSION,
        "key": plan.key,
        "tokio": {"tag": TOKIO_TAG, "commit": TOKIO_COMMIT},
        "target": RUST_TARGET,
        "rustflags": RUSTFLAGS,
        "rustc": plan.rustc,
        "crates": _locked_versions(plan.lockfile),
        "guest_dir": GUEST_DIR,
        "built": {
            example.name: {
                "guest_path": example.guest_path,
                "source_sha256": example.sha256,
                "sha256": hashlib.sha256((output / "bin" / example.name).read_bytes()).hexdigest(),
            }
            for example in built
        },
        "not_built": {**plan.unbuildable, **failures},
        "cargo_toml": plan.manifest,
    }


def _locked_versions(lockfile: str) -> dict[str, str]:
    pairs = re.findall(r'^name = "([^"]+)"\nversion = "([^"]+)"', lockfile, re.MULTILINE)
    return {name: version for name, version in pairs if name != "hil-tokio-examples"}


def _write_overlay(output: Path, manifest: dict) -> None:
    """A cpio laid over the reference initramfs: the binaries and the manifest under GUEST_DIR."""
    archive = NewcWriter()
    archive.add_dir(GUEST_DIR)
    archive.add_file(f"{GUEST_DIR}/{MANIFEST_NAME}", json.dumps(manifest, indent=2).encode() + b"\n", 0o644)
    for name in sorted(manifest["built"]):
        archive.add_host_file(f"{GUEST_DIR}/{name}", output / "bin" / name, 0o755)
    with (output / OVERLAY_NAME).open("wb") as stream:
        archive.write_to(stream)


# --- the reference image's extra -------------------------------------------------------------------------


class TokioExtra:
    """tokio's examples as an extra of the reference guest: build_reference(extras=("tokio",))."""

    name = "tokio"

    def build(self, force: bool, console: Console) -> ExtraOverlay:
        build = build_examples(force=force, console=console)
        summary = (f"{len(build.built)} of tokio's examples ({TOKIO_TAG}) in {GUEST_DIR}; not built: "
                   f"{', '.join(build.not_built) or 'none'} (reasons in {build.root / MANIFEST_NAME})")  # fmt: skip
        info = {"key": build.key, "tokio": build.manifest["tokio"], "guest_dir": GUEST_DIR,
                "built": build.built, "not_built": build.not_built, "summary": summary}  # fmt: skip
        return ExtraOverlay(self.name, build.key, build.overlay, info)


def tokio_extra() -> TokioExtra:
    return TokioExtra()
