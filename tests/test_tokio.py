"""tokio's examples: the pinned catalog, the recipe, hil's manifest, where sources come from, the extras image.

Fast: nothing here compiles or boots (tests/test_tokio_matrix.py does).
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import time
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from hil.errors import InfraError, UsageError
from hil.image import reference
from hil.netio import read_exactly
from hil.tokio import build, drivers, matrix, source, suite, toolchain
from hil.tokio.examples import (
    CRATES,
    EXAMPLES,
    GUEST_DIR,
    TOKIO_COMMIT,
    TOKIO_TAG,
    applicable_examples,
)
from hil.tokio.host import HostServer, udp_exchange

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "hil-tokio-examples" / "recipe.toml"
QUIET = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the test session


# --- the catalog, the drivers and the recipe agree ------------------------------------------------------


def test_every_example_that_applies_has_a_driver_and_the_others_a_reason() -> None:
    driven = {driver.example for driver in drivers.DRIVERS}
    assert driven == {example.name for example in applicable_examples()}
    for example in EXAMPLES:
        assert example.applies or re.search(r"Windows only|task-dump", example.skip_reason), example
        assert re.fullmatch(r"[0-9a-f]{64}", example.sha256)
        assert set(example.crates) <= set(CRATES)
    assert {
        "echo",
        "echo-udp",
        "connect",
        "hello_world",
        "tinyhttp",
        "tinydb",
        "chat",
        "print_each_packet",
        "proxy",
        "udp-client",
        "udp-codec",
        "custom-executor",
        "custom-executor-tokio-context",
    } <= driven


def test_drivers_need_distinct_guest_ports() -> None:
    ports = [port for driver in drivers.DRIVERS for port in driver.ports]
    assert len(ports) == len(set(ports)) and drivers.forwards(list(drivers.DRIVERS)) == tuple(ports)
    assert drivers.DRIVERS_BY_NAME["hello_world"].needs == ("hello_world", "proxy")


def test_the_recipe_builds_the_same_examples_at_the_same_commit() -> None:
    recipe = tomllib.loads(RECIPE.read_text())
    assert recipe["source"]["git"].startswith("https://github.com/tokio-rs/tokio")
    assert recipe["source"]["rev"] == TOKIO_COMMIT and TOKIO_TAG in RECIPE.read_text()
    assert recipe["build"]["template"] == "custom"
    script = recipe["build"]["script"]
    listed = re.search(r'EXAMPLES="([^"]+)"', script, re.DOTALL).group(1).split()
    assert sorted(listed) == sorted(example.name for example in applicable_examples())
    assert "cookbook_cargo_examples ${EXAMPLES}" in script and "COOKBOOK_CARGO_FLAGS=()" in script
    assert f"${{COOKBOOK_STAGE}}{GUEST_DIR}/${{example}}" in script
    config = tomllib.loads((REPO / "recipes" / "config" / "hil.toml").read_text())
    assert "hil-tokio-examples" in config["packages"]


# --- hil's manifest and the crates ----------------------------------------------------------------------


def test_the_manifest_has_no_path_dependencies_and_only_the_crates_used() -> None:
    examples = [example for example in EXAMPLES if example.name in ("echo", "proxy")]
    manifest = build.cargo_manifest(examples)
    parsed = tomllib.loads(manifest)
    assert set(parsed["dependencies"]) == {"tokio", "futures"}
    assert not any("path" in spec for spec in parsed["dependencies"].values()) and "windows" not in manifest
    assert [target["name"] for target in parsed["example"]] == ["echo", "proxy"]
    assert parsed["dependencies"]["tokio"]["features"] == ["full"]


@pytest.mark.parametrize(
    ("requirement", "version", "ok"),
    [("1", "1.24.2", True), ("1", "2.0.0", False), ("0.7", "0.7.3", True), ("0.7", "0.6.9", False)],
)
def test_crate_versions_follow_cargos_caret_rule(requirement: str, version: str, ok: bool) -> None:
    assert toolchain._compatible(requirement, version) is ok


def test_an_example_whose_crate_debian_lacks_is_recorded_with_the_package_to_install(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    for crate in ("tokio-1.24.2", "tokio-util-0.7.3", "futures-0.3.21", "tokio-macros-1.7.0"):
        (registry / crate).mkdir(parents=True)
    available = build.available_crates(registry)
    assert available["tokio-util"] == ["0.7.3"] and "http" not in available
    tinyhttp = next(example for example in EXAMPLES if example.name == "tinyhttp")
    missing = [CRATES[name] for name in tinyhttp.crates if not build.has_crate(available, CRATES[name])]
    reason = build._missing_reason(missing)
    assert "librust-http-dev" in reason and "librust-serde-json-dev" in reason and "tokio-util" not in reason


def test_a_host_without_crates_is_told_in_a_few_lines_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(toolchain.INSTALL_ENV, raising=False)
    registry = tmp_path / "registry"
    (registry / "tokio-1.24.2").mkdir(parents=True)
    missing = toolchain.missing_packages(registry)
    assert "librust-tokio-dev" not in missing and "librust-bytes-dev" in missing
    with pytest.raises(InfraError) as error:
        toolchain.ensure_toolchain(Console(file=io.StringIO()), registry)  # no terminal: no prompt, no install
    lines = str(error.value).splitlines()
    assert len(lines) <= 5 and "{" not in str(error.value), lines
    assert lines[0] == "tokio's examples cannot be built on this host: it lacks"
    assert f"apt-get install {' '.join(missing)}" in lines[-2] and f"{toolchain.INSTALL_ENV}=1" in lines[-1]


def test_the_key_follows_every_input() -> None:
    examples = list(applicable_examples())
    base = build._key(examples, {}, "manifest", "lock", "rustc 1.95")
    assert build._key(examples, {}, "manifest", "lock", "rustc 1.95") == base
    assert build._key(examples[1:], {}, "manifest", "lock", "rustc 1.95") != base
    assert build._key(examples, {}, "manifest", "lock2", "rustc 1.95") != base
    assert build._key(examples, {}, "manifest", "lock", "rustc 1.63") != base


# --- where the sources come from -------------------------------------------------------------------------


def _isolated_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HIL_OFFLINE", "1")
    monkeypatch.delenv(source.SOURCE_ENV, raising=False)
    monkeypatch.setattr(source, "DEBIAN_REGISTRY", tmp_path / "registry")
    (tmp_path / "registry" / "tokio-1.24.2" / "src").mkdir(parents=True)


def test_without_sources_the_error_says_where_hil_looked_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _isolated_sources(monkeypatch, tmp_path)
    with pytest.raises(InfraError) as error:
        source.example_sources(applicable_examples())
    message = str(error.value)
    assert TOKIO_TAG in message and TOKIO_COMMIT in message and source.SOURCE_ENV in message
    assert "tokio-1.24.2 without an examples/ folder" in message


def test_a_source_folder_with_other_bytes_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _isolated_sources(monkeypatch, tmp_path)
    checkout = tmp_path / "tokio"
    (checkout / "examples").mkdir(parents=True)
    (checkout / "examples" / "echo.rs").write_text("fn main() {}\n")
    monkeypatch.setenv(source.SOURCE_ENV, str(checkout))
    echo = [example for example in EXAMPLES if example.name == "echo"]
    with pytest.raises(InfraError, match=r"not the tokio-1\.29\.1 version: echo\.rs"):
        source.example_sources(echo)


def test_the_real_sources_are_verified_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.environ.get(source.SOURCE_ENV):
        pytest.skip(f"{source.SOURCE_ENV} is not set (a tokio checkout or git repository with {TOKIO_TAG})")
    configured = os.environ[source.SOURCE_ENV]
    _isolated_sources(monkeypatch, tmp_path)
    monkeypatch.setenv(source.SOURCE_ENV, configured)
    folder = source.example_sources(applicable_examples())
    assert sorted(path.name for path in folder.iterdir()) == sorted(e.file for e in applicable_examples())
    monkeypatch.delenv(source.SOURCE_ENV)
    assert source.example_sources(applicable_examples()) == folder  # from hil's cache from now on


# --- the reference image's extras -------------------------------------------------------------------------


def _fake_base_image(root: Path) -> reference.ReferenceImage:
    root.mkdir(parents=True)
    names = (reference.VMLINUX_NAME, reference.BZIMAGE_NAME, reference.KEY_NAME, f"{reference.KEY_NAME}.pub")
    for name in names:
        (root / name).write_bytes(f"{name} bytes".encode())
    (root / reference.INITRAMFS_NAME).write_bytes(b"base cpio")
    manifest = {"builder_version": reference.BUILDER_VERSION, "key": "0123456789abcdef", "kernel_version": "6.1"}
    (root / reference.MANIFEST_NAME).write_text(json.dumps(manifest))
    image = reference.load_reference_from(root)
    assert image is not None
    return image


def test_extras_get_their_own_folder_and_key_and_leave_the_base_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path / "cache"))
    base = _fake_base_image(tmp_path / "cache" / "reference" / "0123456789abcdef")
    overlay = tmp_path / "overlay.cpio"
    overlay.write_bytes(b"tokio cpio")
    extra = reference.ExtraOverlay("tokio", "feedfacefeedface", overlay, {"built": ["echo"]})
    image = reference._with_extras(base, [extra], False, QUIET)
    assert image.root == tmp_path / "cache" / "reference" / "extras" / image.key
    assert image.key == reference.extras_key(base.key, {"tokio": "feedfacefeedface"}) != base.key
    assert image.initramfs.read_bytes() == b"base cpio" + b"tokio cpio"
    assert image.vmlinux.stat().st_ino == base.vmlinux.stat().st_ino  # linked, not copied
    assert image.manifest["base_key"] == base.key and image.manifest["extras"]["tokio"]["built"] == ["echo"]
    assert base.initramfs.read_bytes() == b"base cpio"
    assert reference._with_extras(base, [extra], False, QUIET).root == image.root
    other = reference.ExtraOverlay("tokio", "0000000000000000", overlay, {})
    assert reference._with_extras(base, [other], False, QUIET).key != image.key


def test_an_unknown_extra_is_a_usage_error_and_tokio_is_known() -> None:
    with pytest.raises(UsageError, match="known: tokio"):
        reference.load_extra("java")
    assert isinstance(reference.load_extra("tokio"), build.TokioExtra)


# --- host-side helpers and results -----------------------------------------------------------------------


def test_host_servers_answer_and_record(tmp_path: Path) -> None:
    from hil.tokio.guest import DriverLog

    log = DriverLog(tmp_path / "driver.log")
    with HostServer("udp", lambda data: data.upper()) as server:
        assert udp_exchange(server.port, b"ping", time.monotonic() + 10, log) == b"PING"
        assert server.received == [b"ping"]

    def upper(conn: socket.socket) -> bytes:
        got = read_exactly(conn, 4, time.monotonic() + 10)
        conn.sendall(got.upper())
        return got

    with HostServer("tcp", upper) as server, socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.sendall(b"abcd")
        assert read_exactly(conn, 4, time.monotonic() + 10) == b"ABCD"
    assert b"PING" in (tmp_path / "driver.log").read_bytes()


def test_rust_byte_strings_decode() -> None:
    assert drivers._rust_bytes(r"hil\n\t\\\"\x00\x7f") == b'hil\n\t\\"\x00\x7f'


def test_smp_lists_parse() -> None:
    from hil.argtypes import smp_list

    assert smp_list("1,2,4") == [1, 2, 4] and smp_list("2") == [2]
    for bad in ("0", "a,b", ""):
        with pytest.raises(Exception, match=r"CPU count|comma list"):
            smp_list(bad)


def test_the_table_and_json_show_every_cell(tmp_path: Path) -> None:
    cells = [
        matrix.Cell("echo", 1, "pass", "ok", 1.0, "smp-1/echo"),
        matrix.Cell("echo", 2, "fail", "no echo through 127.0.0.1:1 -> guest port 7101", 2.0, "smp-2/echo"),
        matrix.Cell("dump", 1, "skip", "task-dump"),
        matrix.Cell("dump", 2, "skip", "task-dump"),
    ]
    result = matrix.MatrixResult(tmp_path, cells, (1, 2), ["echo", "dump"], 3.0)
    assert not result.ok
    document = json.loads(matrix.write_json(result).read_text())
    assert document["verdict"] == "fail" and document["summary"] == {"pass": 1, "fail": 1, "skip": 2}
    console = Console(record=True, width=120, file=open(os.devnull, "w"))  # noqa: SIM115
    matrix.print_result(result, console)
    text = console.export_text()
    assert "fail echo @ smp 2: no echo through" in text and text.count("skip dump") == 1


def test_examples_are_chosen_by_driver_or_example_name() -> None:
    chosen, skipped = suite.choose(["connect", "echo", "dump"], None)
    assert [driver.name for driver in chosen] == ["connect-tcp", "connect-udp", "echo"]
    assert "task-dump" in skipped["dump"]
    every, unix_only = suite.choose(None, None)
    assert len(every) == len(drivers.DRIVERS) and set(unix_only) == {e.name for e in EXAMPLES if not e.applies}
    with pytest.raises(UsageError, match="unknown tokio example 'nope'"):
        suite.choose(["nope"], None)
