"""Host checks of the Redox probe crate (hil/uring_probe/redox) and its cookbook recipe; no Redox needed.

The crate is built and tested with the host's cargo, offline, with its build output under pytest's temp
folder so the repository stays clean. Its Redox-only modules are type-checked through the crate's
`hil_redox_typecheck` cfg (the Redox std is not installed here, so nothing is built for Redox). A host
dry run's output goes through hil's own probe parser. The recipe and the filesystem config are checked
against the Redox cookbook and installer formats.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CRATE = REPO / "hil" / "uring_probe" / "redox"
RECIPES = REPO / "recipes"
RECIPE = RECIPES / "hil-uring-probe" / "recipe.toml"
FS_CONFIG = RECIPES / "config" / "hil.toml"

CARGO = shutil.which("cargo")
needs_cargo = pytest.mark.skipif(
    CARGO is None, reason="cargo is not installed on this host, so the probe crate cannot be built or tested"
)


@pytest.fixture(scope="module")
def cargo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """cargo's environment: build output in a temp folder, no colours, no inherited RUSTFLAGS."""
    env = dict(os.environ)
    env.pop("RUSTFLAGS", None)
    env["CARGO_TARGET_DIR"] = str(tmp_path_factory.mktemp("cargo-target"))
    env["CARGO_TERM_COLOR"] = "never"
    return env


def _cargo(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    assert CARGO is not None
    done = subprocess.run(
        [CARGO, *args], cwd=CRATE, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert not (CRATE / "target").exists(), "cargo wrote a target/ folder into the repository"
    return done


def _binary(env: dict[str, str]) -> Path:
    built = _cargo(["build", "--offline", "--bin", "hil-uring-probe"], env)
    assert built.returncode == 0, built.stderr[-4000:]
    return Path(env["CARGO_TARGET_DIR"]) / "debug" / "hil-uring-probe"


@needs_cargo
def test_cargo_test_passes(cargo_env: dict[str, str]) -> None:
    done = _cargo(["test", "--offline"], cargo_env)
    assert done.returncode == 0, f"cargo test failed:\n{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
    passed = sum(int(n) for n in re.findall(r"test result: ok\. (\d+) passed", done.stdout))
    assert passed >= 40, done.stdout[-3000:]
    assert "FAILED" not in done.stdout


@needs_cargo
def test_probe_skips_everything_off_redox(cargo_env: dict[str, str]) -> None:
    binary = _binary(cargo_env)
    done = subprocess.run([binary], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"KTAP version 1\n1\.\.0 # SKIP not a Redox system \(\w+\)\n", done.stdout), done.stdout

    ktap = pytest.importorskip("hil.probes.ktap")
    report = ktap.parse_text(done.stdout)
    assert (report.plan, report.cases, report.errors) == (0, [], [])


@needs_cargo
def test_usage_error_prints_nothing_on_stdout(cargo_env: dict[str, str]) -> None:
    binary = _binary(cargo_env)
    done = subprocess.run([binary, "--no-such-option"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "unknown argument" in done.stderr and "usage:" in done.stderr


@needs_cargo
def test_redox_only_modules_typecheck(tmp_path: Path, cargo_env: dict[str, str]) -> None:
    """`sys.rs` and `redox_probe.rs` are compiled only for Redox; type-check them against the host std."""
    env = dict(cargo_env, RUSTFLAGS="--cfg hil_redox_typecheck", CARGO_TARGET_DIR=str(tmp_path / "target"))
    done = _cargo(["check", "--offline", "--all-targets"], env)
    assert done.returncode == 0, done.stderr[-6000:]


@needs_cargo
def test_dry_run_output_satisfies_the_host_parser(tmp_path: Path, cargo_env: dict[str, str]) -> None:
    ktap = pytest.importorskip("hil.probes.ktap")
    done = _cargo(["run", "--offline", "--quiet", "--example", "host_dry_run", "--", str(tmp_path)], cargo_env)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    report = ktap.parse_text(done.stdout)
    assert report.errors == [], report.errors
    assert report.ok
    assert [case.name for case in report.cases] == [
        "setup",
        "scheme_out_of_order",
        "cancel",
        "nvme_rw",
        "depth_1",
        "depth_8",
    ]
    assert report.probe is not None and report.probe.program == "hil-uring-probe"
    assert report.case("setup").metrics["features"].unit == "flags"
    depth = report.case("depth_8").metrics
    assert {"iops", "lat_p50_us", "lat_p99_us", "lat_max_us", "ooo", "ops"} <= set(depth)
    assert depth["lat_p50_us"].unit == "us" and depth["iops"].unit == "ops/s"
    assert report.case("scheme_out_of_order").metrics["out_of_order_completions"].value > 0
    assert not list(tmp_path.glob("hil-uring-probe-dry-run-*")), "the dry run left its temp disk behind"


def test_crate_manifest_has_no_dependencies() -> None:
    manifest = tomllib.loads((CRATE / "Cargo.toml").read_text())
    package = manifest["package"]
    assert (package["name"], package["edition"]) == ("hil-uring-probe", "2021")
    for table in ("dependencies", "dev-dependencies", "build-dependencies"):
        assert not manifest.get(table), f"[{table}] must stay empty: crates.io is out of reach for the build"
    assert not manifest.get("target"), "no platform-specific dependencies either"
    assert [b["name"] for b in manifest["bin"]] == ["hil-uring-probe"]

    lock = tomllib.loads((CRATE / "Cargo.lock").read_text())
    assert [p["name"] for p in lock["package"]] == ["hil-uring-probe"]
    assert lock["package"][0]["version"] == package["version"]


def test_recipe_builds_the_crate_with_the_cargo_template() -> None:
    recipe = tomllib.loads(RECIPE.read_text())
    assert set(recipe) <= {"source", "build", "package"}, "only the cookbook's recipe tables"
    source = recipe["source"]
    assert set(source) == {"path"}, "one source kind (the git alternative stays a comment)"
    crate = (RECIPE.parent / source["path"]).resolve()
    assert crate == CRATE.resolve(), f"[source] path {source['path']!r} resolves to {crate}, not the crate"
    assert (crate / "Cargo.toml").is_file() and (crate / "Cargo.lock").is_file()
    assert recipe["build"] == {"template": "cargo"}
    assert recipe["package"]["dependencies"] == []
    # The cargo template installs the crate's [[bin]] into /usr/bin: the binary name is the install path.
    bins = tomllib.loads((crate / "Cargo.toml").read_text())["bin"]
    assert "hil-uring-probe" in {b["name"] for b in bins}
    assert RECIPE.parent.name == "hil-uring-probe", "the cookbook names a recipe after its folder"


def test_filesystem_config_adds_hil_packages() -> None:
    text = FS_CONFIG.read_text()
    config = tomllib.loads(text)
    assert set(config) <= {"include", "general", "packages", "files", "users", "groups"}
    includes = config["include"]
    assert includes and all(isinstance(p, str) and p.endswith(".toml") and not p.startswith("/") for p in includes)
    packages = config["packages"]
    assert packages.get("hil-uring-probe") == {}
    for name in packages:
        if name.startswith("hil-"):
            assert (RECIPES / name / "recipe.toml").is_file(), f"package {name} has no recipe in recipes/"
    assert packages.get("hil-tokio-examples") == {}, "the tokio examples are in the image"


def test_no_build_output_left_in_the_crate() -> None:
    assert not (CRATE / "target").exists()
