"""Build a Redox image with hil's programs in it, driving a user's Redox build system checkout (redox-os/redox).

hil changes the checkout only in ways it records and can undo (`hil image build --restore`):
- its cookbook recipes (hil's recipes/<name>/) are copied into the checkout's recipe tree (recipes/other/, or
  cookbook/recipes/other/ in checkouts from before the cookbook moved into the main repository in 2025-11),
  copied rather than linked because the cookbook's recipe walk does not follow symlinks. A recipe's relative
  `[source] path` is rewritten: to the absolute path of hil's crate for native builds, to a copy under the
  checkout's build/hil/src/ for podman builds (the container only sees the checkout, mounted at /mnt/redox);
- hil's filesystem config fragment becomes config/x86_64/hil.toml, including the chosen base config; make picks
  config/<arch>/<name>.toml first (mk/config.mk), in old and new checkouts alike;
- for a kernel branch, the kernel recipe's [source] is replaced by a `path` or a git `branch`; the original
  recipe, its source/ clone and its built target/ are moved to build/hil/saved/ so nothing of the user's is lost
  and the cookbook has to fetch and build the override.
Saved state and copies live under build/hil/, which Redox's .gitignore already ignores. Then `make rebuild
CONFIG_NAME=hil` runs (rebuild drops repo.tag, so changed recipes are cooked again), its output streamed to
build.log in a run folder, and the image is build/x86_64/hil/harddrive.img.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from hil.errors import InfraError, UsageError
from hil.guest.ansi import strip_ansi
from hil.paths import new_run_dir

ARCH = "x86_64"
CONFIG_NAME = "hil"
MAKE_TARGET = "rebuild"
FUSE_DEVICE = Path("/dev/fuse")
STATE_DIR = Path("build") / "hil"  # inside the checkout; Redox's .gitignore has /build/
CHANGES_NAME = "changes.json"
LOG_NAME = "build.log"
DEFAULT_KERNEL_GIT = "https://gitlab.redox-os.org/redox-os/kernel.git"
CLONE_HINT = "git clone https://gitlab.redox-os.org/redox-os/redox.git --origin upstream --recursive"
HIL_REPO = Path(__file__).resolve().parents[2]
COPY_IGNORE = shutil.ignore_patterns("target", ".git")
_TABLE_HEADER = re.compile(r"^\s*\[")
_DEPENDS_TOOL = re.compile(r"\$\(shell which ([\w.+-]+)\)")
TAIL_LINES = 25


# --- the checkout --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    """Where things are in a Redox build system checkout."""

    root: Path
    recipes: Path  # the tree the cookbook walks for recipe.toml files
    cookbook_dir: Path  # the cookbook's working directory: relative recipe paths start here
    kernel_recipe: Path

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @property
    def image(self) -> Path:
        return self.root / "build" / ARCH / CONFIG_NAME / "harddrive.img"

    @property
    def config(self) -> Path:
        return self.root / "config" / ARCH / f"{CONFIG_NAME}.toml"


def detect_checkout(path: Path) -> Checkout:
    """Check that `path` is a Redox build system checkout; a UsageError names everything missing."""
    root = path.expanduser().resolve()
    if not root.is_dir():
        raise UsageError(f"--redox {path} is not a folder; it should be a checkout of redox-os/redox ({CLONE_HINT})")
    missing = _missing_build_files(root)
    recipes = _recipe_tree(root)
    kernel = _kernel_recipe(recipes) if recipes else None
    if recipes is None:
        missing.append(_recipe_tree_hint(root))
    elif kernel is None:
        missing.append(f"the kernel recipe ({_display(root, recipes)}/core/kernel/recipe.toml)")
    if missing or recipes is None or kernel is None:
        raise UsageError(
            f"{root} is not a Redox build system checkout (redox-os/redox): missing "
            + "; ".join(missing)
            + f". Clone one with `{CLONE_HINT}`"
        )
    cookbook_dir = root if recipes == root / "recipes" else recipes.parent
    return Checkout(root, recipes, cookbook_dir, kernel)


def _missing_build_files(root: Path) -> list[str]:
    missing = []
    makefile = _read(root / "Makefile")
    targets = ("all", MAKE_TARGET)
    if makefile is None:
        missing.append("Makefile")
    elif not all(re.search(rf"^{target}:", makefile, re.MULTILINE) for target in targets) or (
        "harddrive.img" not in makefile
    ):
        missing.append("a Makefile with the `all` and `rebuild` targets building harddrive.img")
    config_mk = _read(root / "mk" / "config.mk")
    if config_mk is None or "CONFIG_NAME" not in config_mk or "FILESYSTEM_CONFIG" not in config_mk:
        missing.append("mk/config.mk (defining CONFIG_NAME and FILESYSTEM_CONFIG)")
    if not (root / "config").is_dir():
        missing.append("the config/ folder of filesystem configs")
    return missing


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _recipe_tree(root: Path) -> Path | None:
    # Since 2025-11 the recipes live in the main repository; before, in the cookbook submodule.
    for candidate in (root / "recipes", root / "cookbook" / "recipes"):
        if candidate.is_dir():
            return candidate
    return None


def _recipe_tree_hint(root: Path) -> str:
    cookbook = root / "cookbook"
    if cookbook.is_dir() and not any(cookbook.iterdir()):
        return "the cookbook submodule's content (cookbook/ is empty: run `git submodule update --init --recursive`)"
    return "the recipe tree (recipes/ or cookbook/recipes/)"


def _kernel_recipe(recipes: Path) -> Path | None:
    for candidate in (recipes / "core" / "kernel" / "recipe.toml", recipes / "kernel" / "recipe.toml"):
        if candidate.is_file():
            return candidate
    return None


def _display(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


# --- the host ------------------------------------------------------------------------------------------------


def check_host(checkout: Checkout, podman: bool, mount: bool) -> None:
    """The tools the chosen build needs; an InfraError says how to install what is missing."""
    if not shutil.which("make"):
        raise InfraError("`make` is not installed; install it (Debian/Ubuntu: sudo apt-get install make)")
    if podman and not shutil.which("podman"):
        raise InfraError(
            "podman is not installed, and the Redox build system builds inside a podman container by default "
            "(PODMAN_BUILD=1). Install it (Debian/Ubuntu: sudo apt-get install podman fuse-overlayfs slirp4netns; "
            f"or run {checkout.root}/podman_bootstrap.sh), or build on the host with --native"
        )
    if mount:
        _check_fuse()
    if not podman:
        _check_native_tools(checkout)


def _check_fuse() -> None:
    # The installer mounts the new image's RedoxFS through FUSE on the host, in podman builds too
    # (FSTOOLS_IN_PODMAN=0 by default); FSTOOLS_NO_MOUNT=1 avoids it, as Redox's own CI does.
    problems = []
    if not FUSE_DEVICE.exists():
        problems.append(f"{FUSE_DEVICE} does not exist (in a container: run it with --device /dev/fuse)")
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        problems.append("neither fusermount3 nor fusermount is installed")
    if problems:
        raise InfraError(
            "FUSE is not available: " + "; ".join(problems) + ". The build system mounts the image it writes "
            "with FUSE. Install it (Debian/Ubuntu: sudo apt-get install fuse3 libfuse3-dev), or pass --no-mount "
            "(FSTOOLS_NO_MOUNT=1: the image is written without mounting it, as Redox's CI does)"
        )


def _check_native_tools(checkout: Checkout) -> None:
    """The tools the checkout's own mk/depends.mk insists on for a native build."""
    depends = _read(checkout.root / "mk" / "depends.mk") or ""
    missing = [tool for tool in dict.fromkeys(_DEPENDS_TOOL.findall(depends)) if not shutil.which(tool)]
    if missing:
        raise InfraError(
            f"a native build needs {', '.join(missing)} (listed in {checkout.root}/mk/depends.mk), not found on "
            f"PATH. Run {checkout.root}/native_bootstrap.sh, install them, or use the podman build"
        )


# --- recorded, reversible changes ----------------------------------------------------------------------------


class ChangeLog:
    """Every change hil makes in a checkout, kept in build/hil/changes.json so that restore can undo it."""

    def __init__(self, checkout: Checkout, console: Console) -> None:
        self.checkout = checkout
        self.console = console
        self.entries: list[dict[str, str]] = []

    def _saved_path(self, rel: str) -> Path:
        return self.checkout.state / "saved" / rel

    def _record(self, entry: dict[str, str], verb: str, what: str) -> None:
        self.entries.append(entry)
        self.save()
        self.announce(entry["path"], verb, what)

    def announce(self, rel: str, verb: str, what: str) -> None:
        self.console.print(f"  [cyan]{verb}[/] {escape(rel)}  [dim]{escape(what)}[/]", highlight=False)

    def move_aside(self, path: Path, what: str) -> None:
        """Keep the user's file or folder at `path` under build/hil/saved/ until restore."""
        rel = self.checkout.rel(path)
        saved = self._saved_path(rel)
        saved.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, saved)
        self._record({"action": "moved", "path": rel, "saved": self.checkout.rel(saved)}, "moved aside", what)

    def write(self, path: Path, text: str, what: str) -> None:
        if path.exists():
            self.move_aside(path, "the original, kept for --restore")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self._record({"action": "created", "path": self.checkout.rel(path)}, "wrote", what)

    def copy_tree(self, source: Path, path: Path, what: str) -> None:
        if path.exists():
            self.move_aside(path, "the original, kept for --restore")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, path, ignore=COPY_IGNORE, symlinks=True)
        self._record({"action": "created", "path": self.checkout.rel(path)}, "copied", f"{what} from {source}")

    def save(self) -> None:
        self.checkout.state.mkdir(parents=True, exist_ok=True)
        (self.checkout.state / CHANGES_NAME).write_text(json.dumps(self.entries, indent=2) + "\n")


def restore_checkout(checkout: Checkout, console: Console) -> int:
    """Undo every change the last `hil image build` made; the number of changes undone."""
    changes_file = checkout.state / CHANGES_NAME
    if not changes_file.is_file():
        return 0
    try:
        entries = json.loads(changes_file.read_text())
    except (OSError, ValueError) as error:
        raise InfraError(f"cannot read {changes_file} ({error}); undo hil's changes by hand (see the file)") from error
    for entry in reversed(entries):
        path = checkout.root / entry["path"]
        if path.exists() or path.is_symlink():
            _remove(path)  # hil's file, or what the build made in place of the user's (e.g. a kernel source/)
            console.print(f"  [green]removed[/] {escape(entry['path'])}", highlight=False)
        if entry["action"] == "moved":
            _put_back(checkout, entry, console)
    changes_file.unlink()
    shutil.rmtree(checkout.state / "saved", ignore_errors=True)
    shutil.rmtree(checkout.state / "src", ignore_errors=True)
    return len(entries)


def _put_back(checkout: Checkout, entry: dict[str, str], console: Console) -> None:
    saved = checkout.root / entry["saved"]
    if not saved.exists():  # someone deleted build/; git or the cookbook can bring the original back
        console.print(f"  [yellow]cannot restore[/] {escape(entry['path'])}: its saved copy {escape(str(saved))} "
                      "is gone", highlight=False)  # fmt: skip
        return
    os.replace(saved, checkout.root / entry["path"])
    console.print(f"  [green]restored[/] {escape(entry['path'])}", highlight=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# --- TOML text edits (no TOML writer is needed: one table or one key changes) --------------------------------


def toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic-string escapes


def _outside_strings(lines: list[str]) -> list[bool]:
    """For each line, whether it starts outside a multi-line string (a recipe's build script may hold `[`)."""
    flags, inside = [], None
    for line in lines:
        flags.append(inside is None)
        for quotes in ('"""', "'''") if inside is None else (inside,):
            if line.count(quotes) % 2:
                inside = quotes if inside is None else None
                break
    return flags


def replace_table(text: str, table: str, body: str) -> str:
    """`text` with the [table] section's content replaced by `body` (the table is added if absent)."""
    lines = text.splitlines(keepends=True)
    structural = _outside_strings(lines)
    header = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]\s*(#.*)?$")
    start = next((i for i, line in enumerate(lines) if structural[i] and header.match(line)), None)
    block = f"[{table}]\n{body.rstrip()}\n"
    if start is None:
        return block + "\n" + text
    after = range(start + 1, len(lines))
    end = next((i for i in after if structural[i] and _TABLE_HEADER.match(lines[i])), len(lines))
    trailer = "\n" if end < len(lines) else ""
    return "".join(lines[:start]) + block + trailer + "".join(lines[end:])


def _set_key(text: str, table: str | None, key: str, value: str, origin: Path) -> str:
    """Replace the line `key = ...` in [table] (None: the top level) with `key = value`."""
    lines = text.splitlines(keepends=True)
    structural = _outside_strings(lines)
    current: str | None = None
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for index, line in enumerate(lines):
        if not structural[index]:
            continue
        table_match = re.match(r"^\s*\[\s*([^\]]+?)\s*\]", line)
        if table_match:
            current = table_match[1]
        elif current == table and pattern.match(line):
            lines[index] = f"{key} = {value}\n"
            return "".join(lines)
    where = f"[{table}]" if table else "the top level"
    raise InfraError(f"{origin} has no single-line `{key} = ...` in {where}, which hil needs to rewrite")


def _parse(text: str, origin: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InfraError(f"{origin} is not valid TOML after hil's edit ({error}); this is a bug in hil") from error


# --- what hil puts into the checkout -------------------------------------------------------------------------


def hil_recipes_dir() -> Path:
    recipes = HIL_REPO / "recipes"
    if not (recipes / "config" / "hil.toml").is_file():
        raise InfraError(
            f"hil's cookbook recipes are not in {recipes}: `hil image build` needs hil's source checkout (an "
            "installed wheel does not carry the recipes); run it from a clone of hil's repository"
        )
    return recipes


def install_recipes(checkout: Checkout, changes: ChangeLog, hil_recipes: Path, podman: bool) -> list[str]:
    """Copy each of hil's recipes into the checkout's recipe tree; their names."""
    category = checkout.recipes / "other" if (checkout.recipes / "other").is_dir() else checkout.recipes
    names = []
    for recipe_file in sorted(hil_recipes.glob("*/recipe.toml")):
        source_dir = recipe_file.parent
        text = recipe_file.read_text()
        path_source = _parse(text, str(recipe_file)).get("source", {}).get("path")
        destination = category / source_dir.name
        changes.copy_tree(source_dir, destination, f"hil's recipe {source_dir.name}")
        if path_source is not None:
            crate = _resolve_recipe_path(source_dir, path_source)
            where = _source_path_for(checkout, changes, crate, source_dir.name, podman)
            text = _set_key(text, "source", "path", toml_string(where), recipe_file)
            (destination / "recipe.toml").write_text(text)  # inside the copy: removing the copy undoes it
            _check_recipe(destination / "recipe.toml", where)
            changes.announce(checkout.rel(destination / "recipe.toml"), "rewrote", f"[source] path = {where}")
        names.append(source_dir.name)
    return names


def _resolve_recipe_path(recipe_dir: Path, path_source: str) -> Path:
    crate = (recipe_dir / path_source).resolve()
    if not crate.is_dir():
        raise InfraError(f"{recipe_dir / 'recipe.toml'}: its [source] path {path_source} ({crate}) does not exist")
    return crate


def _source_path_for(checkout: Checkout, changes: ChangeLog, source: Path, name: str, podman: bool) -> str:
    """How the cookbook reaches `source`: absolute natively; inside the checkout (relative) under podman."""
    if not podman:
        return str(source)
    if not source.is_relative_to(checkout.root):
        copy = checkout.state / "src" / name
        changes.copy_tree(source, copy, f"a copy the podman container can see (it mounts only {checkout.root})")
        source = copy
    return os.path.relpath(source, checkout.cookbook_dir)


def _check_recipe(path: Path, where: str) -> None:
    parsed = _parse(path.read_text(), str(path))
    if parsed.get("source", {}).get("path") != where:
        raise InfraError(f"{path}: the rewritten [source] path did not come out as {where}; this is a bug in hil")


def base_config(checkout: Checkout, name: str) -> Path:
    """The filesystem config make would use for CONFIG_NAME=name (config/<arch>/ first, as mk/config.mk does)."""
    if name == CONFIG_NAME:
        raise UsageError(f"--config {CONFIG_NAME} is hil's own config; name the base config it should include")
    config_dir = checkout.root / "config"
    for candidate in (config_dir / ARCH / f"{name}.toml", config_dir / f"{name}.toml"):
        if candidate.is_file():
            return candidate
    known = sorted({path.stem for path in [*config_dir.glob("*.toml"), *config_dir.glob(f"{ARCH}/*.toml")]} - {"hil"})
    raise UsageError(f"no filesystem config {name!r} in {config_dir} (nor in {ARCH}/); known: {', '.join(known)}")


def write_config(checkout: Checkout, changes: ChangeLog, hil_recipes: Path, base: Path) -> str:
    """config/<arch>/hil.toml: hil's fragment including `base`; the include path written."""
    fragment = hil_recipes / "config" / "hil.toml"
    include = os.path.relpath(base, checkout.config.parent)
    text = _set_key(fragment.read_text(), None, "include", f"[{toml_string(include)}]", fragment)
    if _parse(text, str(fragment)).get("include") != [include]:
        raise InfraError(f"{fragment}: the rewritten include did not come out as [{include!r}]; a bug in hil")
    changes.write(checkout.config, text, f"hil's filesystem config, include = [{include!r}]")
    return include


def override_kernel(
    checkout: Checkout, changes: ChangeLog, kernel_src: Path | None, kernel_branch: str | None, podman: bool
) -> str:
    """Point the kernel recipe at a local tree or a git branch; the new [source] body."""
    recipe = checkout.kernel_recipe
    original = recipe.read_text()
    if kernel_src is not None:
        where = _source_path_for(checkout, changes, kernel_tree(checkout, kernel_src), "kernel", podman)
        body = f"path = {toml_string(where)}\n"
    else:
        git = _parse(original, str(recipe)).get("source", {}).get("git") or DEFAULT_KERNEL_GIT
        body = f"git = {toml_string(git)}\nbranch = {toml_string(kernel_branch or '')}\n"
    for leftover in ("source", "target"):  # the user's clone and build: kept, and the override starts clean
        if (recipe.parent / leftover).exists():
            changes.move_aside(recipe.parent / leftover, f"the kernel's own {leftover}/, kept for --restore")
    text = replace_table(original, "source", body)
    changes.write(recipe, text, "kernel recipe with [source] " + body.strip().replace("\n", ", "))
    _parse(text, str(recipe))
    return body


def kernel_tree(checkout: Checkout, path: Path) -> Path:
    """The --kernel-src folder, checked: a Rust crate, and not the kernel recipe's own source/ (moved aside)."""
    tree = path.expanduser().resolve()
    if not (tree / "Cargo.toml").is_file():
        raise UsageError(f"--kernel-src {path} is not a kernel source tree (no Cargo.toml in {tree})")
    own_source = checkout.kernel_recipe.parent / "source"
    if tree.is_relative_to(own_source):
        raise UsageError(
            f"--kernel-src {path} is the kernel recipe's own source folder, which the build uses anyway; "
            "drop --kernel-src, or point it at a kernel tree outside the recipe"
        )
    return tree


def check_branch(branch: str) -> str:
    if not re.fullmatch(r"[\w][\w./+-]*", branch) or ".." in branch:
        raise UsageError(f"--kernel-branch {branch!r} is not a git branch name")
    return branch


# --- running make --------------------------------------------------------------------------------------------


def make_command(podman: bool, mount: bool) -> list[str]:
    argv = ["make", MAKE_TARGET, f"ARCH={ARCH}", f"CONFIG_NAME={CONFIG_NAME}"]
    # FILESYSTEM_CONFIG too: a user's .config may set it, and command-line variables win over it.
    argv += [f"FILESYSTEM_CONFIG=config/{ARCH}/{CONFIG_NAME}.toml", f"PODMAN_BUILD={int(podman)}"]
    return argv if mount else [*argv, "FSTOOLS_NO_MOUNT=1"]


def make_environment() -> dict[str, str]:
    # CI=1 turns off the cookbook's full-screen TUI, so the log gets plain lines (mk/podman.mk passes it on).
    return {**os.environ, "CI": "1"}


def run_make(checkout: Checkout, argv: list[str], log_dir: Path, console: Console) -> None:
    """Run make in the checkout, every line to build.log and the latest one on the status line."""
    log_path = log_dir / LOG_NAME
    (log_dir / "command.json").write_text(json.dumps({"argv": argv, "cwd": str(checkout.root), "env": {"CI": "1"}}))
    console.print(f"  [bold]running[/] {escape(' '.join(argv))}  [dim]in {escape(str(checkout.root))}[/]")
    console.print(f"  [dim]log: {escape(str(log_path))}[/]", highlight=False)
    started = time.monotonic()
    with log_path.open("wb") as log, _started(argv, checkout.root) as process:
        assert process.stdout is not None
        with console.status("make: starting") as status:
            for raw in process.stdout:
                log.write(raw)
                log.flush()
                line = strip_ansi(raw.decode("utf-8", errors="replace")).strip()
                if line:
                    status.update(f"make ({time.monotonic() - started:.0f} s): {escape(line[:160])}")
        code = process.wait()
    if code != 0:
        raise InfraError(
            f"`{' '.join(argv)}` failed with exit code {code} after {time.monotonic() - started:.0f} s; "
            f"the last lines of its output:\n{_tail(log_path)}\nFull log: {log_path}"
        )


@contextlib.contextmanager
def _started(argv: list[str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """make in its own process group, stopped with everything it started if hil is interrupted."""
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=make_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:
        raise InfraError(f"cannot run {argv[0]}: {error}") from error
    try:
        yield process
    except BaseException:
        _stop(process)
        raise
    finally:
        if process.stdout:
            process.stdout.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(log_path: Path) -> str:
    lines = strip_ansi(log_path.read_bytes()[-64 * 1024 :].decode("utf-8", errors="replace")).splitlines()
    return "\n".join(f"  | {line}" for line in lines[-TAIL_LINES:]) or "  (no output)"


# --- the whole build -----------------------------------------------------------------------------------------


def build_image(
    redox: Path,
    config: str,
    kernel_src: Path | None,
    kernel_branch: str | None,
    podman: bool,
    console: Console,
    *,
    mount: bool = True,
    log_dir: Path | None = None,
    hil_recipes: Path | None = None,
) -> Path:
    """Put hil's recipes and config (and a kernel override) into the checkout, build, return the image."""
    if kernel_src is not None and kernel_branch is not None:
        raise UsageError("choose one of --kernel-src and --kernel-branch")
    checkout = detect_checkout(redox)
    check_host(checkout, podman, mount)
    base = base_config(checkout, config)
    if kernel_src is not None:
        kernel_tree(checkout, kernel_src)  # checked before anything is written
    if kernel_branch is not None:
        check_branch(kernel_branch)
    recipes = hil_recipes or hil_recipes_dir()
    if restore_checkout(checkout, console):
        console.print("  [dim](undid the previous `hil image build` first)[/]")
    console.print(f"[bold]Preparing {escape(str(checkout.root))}[/] (undo with `hil image build --redox "
                  f"{escape(str(redox))} --restore`)")  # fmt: skip
    changes = ChangeLog(checkout, console)
    install_recipes(checkout, changes, recipes, podman)
    write_config(checkout, changes, recipes, base)
    if kernel_src is not None or kernel_branch is not None:
        override_kernel(checkout, changes, kernel_src, kernel_branch, podman)
    log_dir = log_dir or new_run_dir("image-build")
    log_dir.mkdir(parents=True, exist_ok=True)
    checkout.image.unlink(missing_ok=True)  # so a stale image can never pass for this build's
    run_make(checkout, make_command(podman, mount), log_dir, console)
    if not checkout.image.is_file():
        raise InfraError(f"make succeeded but wrote no {checkout.image}; see {log_dir / LOG_NAME}")
    return checkout.image


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `build_command` reads, for the CLI to attach to `hil image build`."""
    parser.add_argument("--redox", type=Path, required=True, metavar="PATH",
                        help="a checkout of the Redox build system (redox-os/redox)")  # fmt: skip
    parser.add_argument("--config", default="server", metavar="NAME",
                        help="the filesystem config hil's config includes (default: server)")  # fmt: skip
    kernel = parser.add_mutually_exclusive_group()
    kernel.add_argument("--kernel-src", type=Path, metavar="PATH", help="build the kernel from this source tree")
    kernel.add_argument("--kernel-branch", metavar="BRANCH", help="build the kernel from this branch of its git repo")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--podman", dest="podman", action="store_true", default=True,
                     help="build inside the build system's podman container (default)")  # fmt: skip
    how.add_argument("--native", dest="podman", action="store_false", help="build on the host (PODMAN_BUILD=0)")
    parser.add_argument("--no-mount", dest="mount", action="store_false",
                        help="write the image without mounting it through FUSE (FSTOOLS_NO_MOUNT=1)")  # fmt: skip
    parser.add_argument("--log-dir", type=Path, metavar="DIR", help="where build.log goes (default: a new run folder)")
    parser.add_argument("--restore", action="store_true",
                        help="undo what the last `hil image build` changed in the checkout, and stop")  # fmt: skip


def build_command(args: argparse.Namespace, console: Console) -> int:
    """`hil image build`; expects the attributes `add_build_arguments` defines."""
    if getattr(args, "restore", False):
        checkout = detect_checkout(args.redox)
        undone = restore_checkout(checkout, console)
        console.print(f"Restored {checkout.root}: {undone} change(s) undone" if undone else "Nothing to restore")
        return 0
    image = build_image(
        args.redox, args.config, args.kernel_src, args.kernel_branch, args.podman, console,
        mount=getattr(args, "mount", True), log_dir=getattr(args, "log_dir", None),
    )  # fmt: skip
    console.print(f"[bold green]Built[/] {escape(str(image))}", soft_wrap=True, highlight=False)
    return 0
