"""`hil image build` against a fake, minimal Redox build system checkout and a fake `make`.

What is real here: hil's own recipes and filesystem config fragment, the checkout detection, every file hil
writes into the checkout (and restores), the make command line and environment, log capture and the
returned image path. What is not: the Redox build itself (that needs a real checkout, podman or the native
toolchain, FUSE and an hour); the fake make records what it was asked and writes a stand-in image.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from hil.errors import InfraError, UsageError
from hil.image import build

HIL_REPO = Path(__file__).resolve().parents[1]
HIL_CRATE = HIL_REPO / "hil" / "uring_probe" / "redox"
KERNEL_GIT = "https://gitlab.redox-os.org/redox-os/kernel.git"

# recipes/core/kernel/recipe.toml as in redox-os/redox (2026); the script's `[` lines must survive edits.
KERNEL_RECIPE = f'''[source]
git = "{KERNEL_GIT}"

[build]
template = "custom"
script = """
[ -d "${{COOKBOOK_SOURCE}}" ] || exit 1
cd "${{COOKBOOK_SOURCE}}"
make install BUILD="${{COOKBOOK_BUILD}}" DESTDIR="${{COOKBOOK_STAGE}}"
"""
'''

MAKEFILE = """include mk/config.mk
include mk/depends.mk

all: $(BUILD)/harddrive.img

rebuild:
\trm -rf $(BUILD)/repo.tag $(BUILD)/harddrive.img $(BUILD)/redox-live.iso
\t$(MAKE) all
"""

CONFIG_MK = """CONFIG_NAME?=desktop
ifeq ($(wildcard config/$(ARCH)/$(CONFIG_NAME).toml),)
FILESYSTEM_CONFIG?=config/$(CONFIG_NAME).toml
else
FILESYSTEM_CONFIG?=config/$(ARCH)/$(CONFIG_NAME).toml
endif
BUILD=build/$(ARCH)/$(CONFIG_NAME)
"""

DEPENDS_MK = """ifneq ($(SKIP_CHECK_TOOLS),1)
ifeq ($(shell which hil-test-nasm),)
$(error nasm not found, install from your package manager)
endif
endif
"""

FAKE_MAKE = """#!/bin/sh
printf '%s\\n' "$@" > "$HIL_TEST_RECORD.argv"
pwd > "$HIL_TEST_RECORD.cwd"
printf '%s\\n' "${CI-unset}" > "$HIL_TEST_RECORD.ci"
echo "cook hil-uring-probe"
printf '\\033[1;32mcook kernel - successful\\033[0m\\n'
echo "a warning on stderr" >&2
if [ -n "$HIL_TEST_MAKE_FAILS" ]; then echo "error: could not compile kernel"; exit 2; fi
mkdir -p build/x86_64/hil && printf 'fake image' > build/x86_64/hil/harddrive.img
"""


def write(path: Path, text: str, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def fake_checkout(root: Path, old_layout: bool = False) -> Path:
    """The files hil looks at in redox-os/redox; old_layout: the cookbook submodule and per-arch configs."""
    write(root / "Makefile", MAKEFILE)
    write(root / "mk" / "config.mk", CONFIG_MK)
    write(root / "mk" / "depends.mk", DEPENDS_MK)
    recipes = root / ("cookbook/recipes" if old_layout else "recipes")
    config = root / "config" / ("x86_64" if old_layout else "")
    for name in ("server", "desktop", "minimal"):
        write(config / f"{name}.toml", f"# {name}\ninclude = []\n[packages]\n{name}-thing = {{}}\n")
    write(root / "config" / "x86_64" / "demo.toml", 'include = ["../desktop.toml"]\n')
    write(recipes / "core" / "kernel" / "recipe.toml", KERNEL_RECIPE)
    write(recipes / "core" / "kernel" / "source" / "src" / "lib.rs", "// the user's kernel clone, with edits\n")
    write(recipes / "core" / "kernel" / "target" / "x86_64-unknown-redox" / "stage.pkgar", "built kernel")
    (recipes / "other" / "book").mkdir(parents=True)
    return root


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin folder with a fake make, podman and fusermount3 first on PATH; FUSE's device faked too."""
    bin_dir = tmp_path / "bin"
    write(bin_dir / "make", FAKE_MAKE, 0o755)
    for tool in ("podman", "fusermount3", "hil-test-nasm"):
        write(bin_dir / tool, "#!/bin/sh\nexit 0\n", 0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("HIL_TEST_RECORD", str(tmp_path / "make-record"))
    monkeypatch.setattr(build, "FUSE_DEVICE", write(tmp_path / "dev-fuse", ""))
    return bin_dir


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return fake_checkout(tmp_path / "redox")


def console() -> Console:
    return Console(file=io.StringIO(), width=200)


def recorded(tmp_path: Path, what: str) -> str:
    return (tmp_path / f"make-record.{what}").read_text()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- detection -----------------------------------------------------------------------------------------------


def test_an_empty_folder_is_not_a_checkout_and_the_error_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        build.detect_checkout(tmp_path)
    message = str(caught.value)
    for expected in ("not a Redox build system checkout", "Makefile", "mk/config.mk", "config/", "recipe tree",
                     "git clone https://gitlab.redox-os.org/redox-os/redox.git"):  # fmt: skip
        assert expected in message


def test_a_makefile_without_the_targets_is_named(checkout: Path) -> None:
    write(checkout / "Makefile", "all:\n\techo hello\n")
    with pytest.raises(UsageError, match=r"a Makefile with the `all` and `rebuild` targets building harddrive\.img"):
        build.detect_checkout(checkout)


def test_an_uninitialised_cookbook_submodule_says_how_to_fetch_it(tmp_path: Path) -> None:
    root = fake_checkout(tmp_path / "redox", old_layout=True)
    for path in sorted((root / "cookbook").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    with pytest.raises(UsageError, match="git submodule update --init --recursive"):
        build.detect_checkout(root)


def test_both_layouts_are_detected(tmp_path: Path) -> None:
    current = build.detect_checkout(fake_checkout(tmp_path / "new"))
    assert (current.recipes, current.cookbook_dir) == (tmp_path / "new" / "recipes", tmp_path / "new")
    old = build.detect_checkout(fake_checkout(tmp_path / "old", old_layout=True))
    assert (old.recipes, old.cookbook_dir) == (tmp_path / "old/cookbook/recipes", tmp_path / "old/cookbook")
    assert old.kernel_recipe == tmp_path / "old/cookbook/recipes/core/kernel/recipe.toml"


def test_missing_podman_says_how_to_install_it(
    checkout: Path, tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tools / "podman").unlink()
    monkeypatch.setenv("PATH", str(tools))  # nothing but the fakes: no host podman can answer
    with pytest.raises(InfraError, match=r"podman is not installed.*apt-get install podman.*--native"):
        build.build_image(checkout, "server", None, None, True, console())
    assert not (checkout / "build").exists(), "nothing may be written before the checks pass"


def test_missing_fuse_device_or_fusermount_is_explained(
    checkout: Path, tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "FUSE_DEVICE", tmp_path / "no-such-fuse")
    with pytest.raises(InfraError, match=r"no-such-fuse does not exist.*apt-get install fuse3.*--no-mount"):
        build.build_image(checkout, "server", None, None, False, console())
    monkeypatch.setattr(build, "FUSE_DEVICE", tools / "podman")
    (tools / "fusermount3").unlink()
    monkeypatch.setenv("PATH", str(tools))
    with pytest.raises(InfraError, match="neither fusermount3 nor fusermount is installed"):
        build.build_image(checkout, "server", None, None, True, console())


def test_native_builds_check_the_tools_of_the_checkouts_depends_mk(checkout: Path, tools: Path) -> None:
    (tools / "hil-test-nasm").unlink()
    with pytest.raises(InfraError, match=r"a native build needs hil-test-nasm \(listed in .*mk/depends.mk\)"):
        build.build_image(checkout, "server", None, None, False, console())
    build.build_image(checkout, "server", None, None, True, console())  # podman builds do not need them


def test_unknown_base_config_lists_the_known_ones(checkout: Path, tools: Path) -> None:
    with pytest.raises(UsageError, match=r"no filesystem config 'kiosk'.*known: demo, desktop, minimal, server"):
        build.build_image(checkout, "kiosk", None, None, True, console())
    with pytest.raises(UsageError, match="hil's own config"):
        build.build_image(checkout, "hil", None, None, True, console())


# --- the whole flow with a fake make -------------------------------------------------------------------------


def test_podman_build_writes_recipe_and_config_runs_make_and_returns_the_image(
    checkout: Path, tools: Path, tmp_path: Path
) -> None:
    out = console()
    image = build.build_image(checkout, "server", None, None, True, out, log_dir=tmp_path / "run")

    assert image == checkout / "build/x86_64/hil/harddrive.img" and image.read_text() == "fake image"
    assert recorded(tmp_path, "argv").splitlines() == [
        "rebuild", "ARCH=x86_64", "CONFIG_NAME=hil", "FILESYSTEM_CONFIG=config/x86_64/hil.toml", "PODMAN_BUILD=1",
    ]  # fmt: skip
    assert recorded(tmp_path, "cwd").strip() == str(checkout)
    assert recorded(tmp_path, "ci").strip() == "1"
    log = (tmp_path / "run" / "build.log").read_text()
    assert "cook hil-uring-probe" in log and "\x1b[1;32mcook kernel" in log and "a warning on stderr" in log
    assert json.loads((tmp_path / "run" / "command.json").read_text())["argv"][0] == "make"

    recipe_file = checkout / "recipes/other/hil-uring-probe/recipe.toml"
    recipe = tomllib.loads(recipe_file.read_text())
    assert recipe["source"]["path"] == "build/hil/src/hil-uring-probe"  # relative to the checkout: the cwd
    assert recipe["build"]["template"] == "cargo"
    crate_copy = checkout / "build/hil/src/hil-uring-probe"
    assert (crate_copy / "Cargo.toml").read_bytes() == (HIL_CRATE / "Cargo.toml").read_bytes()
    assert not (crate_copy / "target").exists()
    assert not any(p.is_symlink() for p in (checkout / "recipes/other/hil-uring-probe").rglob("*"))

    config = tomllib.loads((checkout / "config/x86_64/hil.toml").read_text())
    assert config["include"] == ["../server.toml"]
    assert "hil-uring-probe" in config["packages"]

    printed = out.file.getvalue()
    for announced in ("recipes/other/hil-uring-probe", "config/x86_64/hil.toml", "make rebuild", "--restore"):
        assert announced in printed
    assert (checkout / "recipes/core/kernel/recipe.toml").read_text() == KERNEL_RECIPE  # no override asked


def test_native_build_points_the_recipe_at_hils_crate(checkout: Path, tools: Path, tmp_path: Path) -> None:
    build.build_image(checkout, "demo", None, None, False, console(), mount=False, log_dir=tmp_path / "run")

    assert recorded(tmp_path, "argv").splitlines()[-2:] == ["PODMAN_BUILD=0", "FSTOOLS_NO_MOUNT=1"]
    recipe = tomllib.loads((checkout / "recipes/other/hil-uring-probe/recipe.toml").read_text())
    assert recipe["source"]["path"] == str(HIL_CRATE)
    assert not (checkout / "build/hil/src").exists()
    config = tomllib.loads((checkout / "config/x86_64/hil.toml").read_text())
    assert config["include"] == ["demo.toml"]  # config/x86_64/demo.toml sits beside it


def test_old_layout_paths_are_relative_to_the_cookbook_folder(tmp_path: Path, tools: Path) -> None:
    root = fake_checkout(tmp_path / "redox", old_layout=True)
    build.build_image(root, "server", None, None, True, console(), log_dir=tmp_path / "run")

    recipe = tomllib.loads((root / "cookbook/recipes/other/hil-uring-probe/recipe.toml").read_text())
    assert recipe["source"]["path"] == "../build/hil/src/hil-uring-probe"  # repo.sh runs in cookbook/
    assert (root / "cookbook" / recipe["source"]["path"] / "Cargo.toml").is_file()
    assert tomllib.loads((root / "config/x86_64/hil.toml").read_text())["include"] == ["server.toml"]


def test_kernel_src_override_keeps_the_original_and_restore_brings_everything_back(
    checkout: Path, tools: Path, tmp_path: Path
) -> None:
    before = snapshot(checkout)
    kernel = write(tmp_path / "my-kernel" / "Cargo.toml", '[package]\nname = "kernel"\n').parent
    write(kernel / "target" / "huge.o", "build output")

    build.build_image(checkout, "server", kernel, None, False, console(), log_dir=tmp_path / "run")

    kernel_recipe = checkout / "recipes/core/kernel/recipe.toml"
    parsed = tomllib.loads(kernel_recipe.read_text())
    assert parsed["source"] == {"path": str(kernel)}
    assert parsed["build"] == tomllib.loads(KERNEL_RECIPE)["build"]  # the build script survives the edit
    saved = checkout / "build/hil/saved/recipes/core/kernel"
    assert (saved / "recipe.toml").read_text() == KERNEL_RECIPE
    assert (saved / "source/src/lib.rs").read_text().startswith("// the user's kernel clone")
    assert (saved / "target/x86_64-unknown-redox/stage.pkgar").is_file()
    assert not (checkout / "recipes/core/kernel/source").exists()  # the cookbook copies the override here

    write(checkout / "recipes/core/kernel/source/copied-by-cookbook", "x")  # what a real build would leave
    assert build.restore_checkout(build.detect_checkout(checkout), console()) > 0

    after = {name: data for name, data in snapshot(checkout).items() if not name.startswith("build/")}
    assert after == before
    assert not (checkout / "build/hil/changes.json").exists()


def test_kernel_src_outside_the_checkout_is_copied_in_for_podman(checkout: Path, tools: Path, tmp_path: Path) -> None:
    kernel = write(tmp_path / "my-kernel" / "Cargo.toml", '[package]\nname = "kernel"\n').parent
    write(kernel / "target" / "huge.o", "build output")
    write(kernel / ".git" / "HEAD", "ref: refs/heads/branch\n")

    build.build_image(checkout, "server", kernel, None, True, console(), log_dir=tmp_path / "run")

    source = tomllib.loads((checkout / "recipes/core/kernel/recipe.toml").read_text())["source"]
    assert source == {"path": "build/hil/src/kernel"}
    copy = checkout / "build/hil/src/kernel"
    assert (copy / "Cargo.toml").is_file() and not (copy / "target").exists() and not (copy / ".git").exists()


def test_kernel_branch_override_uses_the_recipes_git_url(checkout: Path, tools: Path, tmp_path: Path) -> None:
    build.build_image(checkout, "server", None, "sched-fix", True, console(), log_dir=tmp_path / "run")

    parsed = tomllib.loads((checkout / "recipes/core/kernel/recipe.toml").read_text())
    assert parsed["source"] == {"git": KERNEL_GIT, "branch": "sched-fix"}
    assert (checkout / "build/hil/saved/recipes/core/kernel/recipe.toml").read_text() == KERNEL_RECIPE


def test_a_new_build_first_undoes_the_previous_one(checkout: Path, tools: Path, tmp_path: Path) -> None:
    build.build_image(checkout, "server", None, "sched-fix", True, console(), log_dir=tmp_path / "run1")
    out = console()
    build.build_image(checkout, "desktop", None, None, True, out, log_dir=tmp_path / "run2")

    assert (checkout / "recipes/core/kernel/recipe.toml").read_text() == KERNEL_RECIPE
    assert (checkout / "recipes/core/kernel/source/src/lib.rs").is_file()
    assert tomllib.loads((checkout / "config/x86_64/hil.toml").read_text())["include"] == ["../desktop.toml"]
    assert "undid the previous" in out.file.getvalue()
    changes = json.loads((checkout / "build/hil/changes.json").read_text())
    assert {entry["path"] for entry in changes} >= {"recipes/other/hil-uring-probe", "config/x86_64/hil.toml"}


def test_a_users_own_hil_config_is_kept_and_restored(checkout: Path, tools: Path, tmp_path: Path) -> None:
    write(checkout / "config/x86_64/hil.toml", "# mine\n")
    build.build_image(checkout, "server", None, None, True, console(), log_dir=tmp_path / "run")
    assert (checkout / "build/hil/saved/config/x86_64/hil.toml").read_text() == "# mine\n"
    build.restore_checkout(build.detect_checkout(checkout), console())
    assert (checkout / "config/x86_64/hil.toml").read_text() == "# mine\n"


def test_a_failing_make_reports_the_exit_code_the_last_lines_and_the_log(
    checkout: Path, tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIL_TEST_MAKE_FAILS", "1")
    write(checkout / "build/x86_64/hil/harddrive.img", "stale image from an earlier build")
    with pytest.raises(InfraError) as caught:
        build.build_image(checkout, "server", None, None, True, console(), log_dir=tmp_path / "run")
    message = str(caught.value)
    assert "exit code 2" in message and "error: could not compile kernel" in message
    assert "\x1b[" not in message and str(tmp_path / "run" / "build.log") in message
    assert not (checkout / "build/x86_64/hil/harddrive.img").exists(), "a stale image must not survive a failure"


def test_replace_table_keeps_everything_around_it() -> None:
    text = '# head\n[source]\ngit = "a"\nrev = "b"\n\n[build]\ntemplate = "cargo"\n'
    result = build.replace_table(text, "source", 'path = "/x"\n')
    assert result == '# head\n[source]\npath = "/x"\n\n[build]\ntemplate = "cargo"\n'
    assert build.replace_table('[build]\ntemplate = "none"\n', "source", 'path = "/x"').startswith("[source]\n")


# --- the command line ----------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser()
    build.add_build_arguments(result)
    return result


def test_cli_defaults_and_mutually_exclusive_options(checkout: Path) -> None:
    args = parser().parse_args(["--redox", str(checkout)])
    assert (args.config, args.podman, args.mount, args.kernel_src, args.kernel_branch) == (
        "server", True, True, None, None,
    )  # fmt: skip
    assert parser().parse_args(["--redox", "x", "--native", "--no-mount"]).podman is False
    for conflicting in (["--podman", "--native"], ["--kernel-src", "a", "--kernel-branch", "b"]):
        with pytest.raises(SystemExit):
            parser().parse_args(["--redox", "x", *conflicting])


def test_build_command_and_restore(checkout: Path, tools: Path, tmp_path: Path) -> None:
    out = console()
    args = parser().parse_args(["--redox", str(checkout), "--kernel-branch", "b", "--log-dir", str(tmp_path / "r")])
    assert build.build_command(args, out) == 0
    assert "Built" in out.file.getvalue() and "harddrive.img" in out.file.getvalue()

    restore = parser().parse_args(["--redox", str(checkout), "--restore"])
    assert build.build_command(restore, out) == 0
    assert (checkout / "recipes/core/kernel/recipe.toml").read_text() == KERNEL_RECIPE
    assert not (checkout / "recipes/other/hil-uring-probe").exists()
    assert build.build_command(restore, out) == 0
    assert out.file.getvalue().rstrip().endswith("Nothing to restore")


def test_bad_kernel_options_are_usage_errors_before_anything_is_written(checkout: Path, tools: Path) -> None:
    own_source = checkout / "recipes/core/kernel/source"
    write(own_source / "Cargo.toml", "[package]\n")
    with pytest.raises(UsageError, match="the kernel recipe's own source folder"):
        build.build_image(checkout, "server", own_source, None, True, console())
    with pytest.raises(UsageError, match="not a kernel source tree"):
        build.build_image(checkout, "server", checkout / "config", None, True, console())
    with pytest.raises(UsageError, match="not a git branch name"):
        build.build_image(checkout, "server", None, "--upload-pack=evil", True, console())
    assert not (checkout / "build").exists()


def test_restore_survives_a_deleted_saved_copy(checkout: Path, tools: Path, tmp_path: Path) -> None:
    build.build_image(checkout, "server", None, "b", True, console(), log_dir=tmp_path / "run")
    shutil.rmtree(checkout / "build/hil/saved/recipes/core/kernel/source")
    out = console()
    build.restore_checkout(build.detect_checkout(checkout), out)
    assert "cannot restore recipes/core/kernel/source" in out.file.getvalue()
    assert (checkout / "recipes/core/kernel/recipe.toml").read_text() == KERNEL_RECIPE
