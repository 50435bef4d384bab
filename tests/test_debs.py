"""Debian package helpers: apt output parsing, and the offline HIL_DEB_DIR path with a .deb made here."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hil.errors import InfraError
from hil.image import debs

POLICY = """\
libc6:
  Installed: 2.36-9+deb12u14
  Candidate: 2.36-9+deb12u14
  Version table:
 *** 2.36-9+deb12u14 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
busybox-static:
  Installed: (none)
  Candidate: 1:1.35.0-4+deb12u1+b1
  Version table:
     1:1.35.0-4+deb12u1+b1 500
gone:
  Installed: (none)
  Candidate: (none)
"""


def test_policy_output_gives_each_candidate() -> None:
    assert debs._parse_policy(POLICY) == {"libc6": "2.36-9+deb12u14", "busybox-static": "1:1.35.0-4+deb12u1+b1"}


@pytest.mark.parametrize(
    ("text", "name", "exact"),
    [
        ("linux-image-6.1.0-56-amd64 (= 6.1.192-2)", "linux-image-6.1.0-56-amd64", "6.1.192-2"),
        ("libc6 (>= 2.34)", "libc6", None),
        ("zlib1g", "zlib1g", None),
        ("libfoo:any (= 1.0) | libbar", "libfoo", "1.0"),
    ],
)
def test_dependencies_are_parsed(text: str, name: str, exact: str | None) -> None:
    assert debs._parse_dependency(text) == debs.Dependency(name, exact)


def test_epoch_colon_is_escaped_like_apt_does() -> None:
    assert debs.deb_filename_version("1:1.35.0-4") == "1%3a1.35.0-4"


def test_first_stanza_only() -> None:
    text = "Package: a\nVersion: 1\nDepends: x,\n y\n\nPackage: a\nVersion: 1\nDepends: z\n"
    assert debs._parse_stanza(text) == {"Package": "a", "Version": "1", "Depends": "x,\ny"}


needs_dpkg = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None or shutil.which("apt-cache") is None, reason="needs dpkg-deb and apt-cache"
)


def _make_deb(folder: Path, name: str, version: str, depends: str = "") -> Path:
    """A real, tiny .deb built with dpkg-deb, holding one file."""
    tree = folder / f"tree-{name}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/share" / name).mkdir(parents=True)
    (tree / "usr/share" / name / "hello").write_text(f"{name} {version}\n")
    control = f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: hil <hil@invalid>\n"
    control += f"Depends: {depends}\n" if depends else ""
    (tree / "DEBIAN/control").write_text(control + "Description: hil test package\n")
    deb = folder / f"{name}_{debs.deb_filename_version(version)}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True)
    shutil.rmtree(tree)
    return deb


@needs_dpkg
def test_deb_dir_supplies_unknown_packages_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deb_dir = tmp_path / "debs"
    deb_dir.mkdir()
    _make_deb(deb_dir, "hil-test-pkg", "1.0-1")
    _make_deb(deb_dir, "hil-test-pkg", "1:0.5-1")  # the epoch makes this one the newest
    monkeypatch.setenv(debs.DEB_DIR_ENV, str(deb_dir))
    assert debs.candidate_versions(["hil-test-pkg"]) == {"hil-test-pkg": "1:0.5-1"}

    package = debs.fetch("hil-test-pkg", "1:0.5-1", tmp_path / "cache")
    assert package.path.parent == deb_dir
    assert package.sha256 == debs.sha256_file(package.path)
    assert not (tmp_path / "cache").exists()  # nothing downloaded

    debs.extract(package.path, tmp_path / "root")
    assert (tmp_path / "root/usr/share/hil-test-pkg/hello").read_text() == "hil-test-pkg 1:0.5-1\n"


@needs_dpkg
def test_kernel_meta_package_resolves_from_deb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_deb(tmp_path, "hil-test-image-meta", "2.0", depends="hil-test-x, linux-image-9.9-hil (= 9.9.1-1)")
    monkeypatch.setenv(debs.DEB_DIR_ENV, str(tmp_path))
    assert debs.resolve_kernel_package("hil-test-image-meta") == ("linux-image-9.9-hil", "9.9.1-1")


@needs_dpkg
def test_unknown_package_without_deb_dir_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(debs.DEB_DIR_ENV, raising=False)
    with pytest.raises(InfraError, match="apt-get update"):
        debs.candidate_versions(["hil-test-no-such-package"])


def test_missing_tool_is_an_infra_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InfraError, match="apt-cache` is not installed"):
        debs.candidate_versions(["libc6"])


@needs_dpkg
def test_failed_download_reports_command_output_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(debs.DEB_DIR_ENV, raising=False)
    with pytest.raises(InfraError) as raised:
        debs.fetch("hil-test-no-such-package", "1.0", tmp_path)
    message = str(raised.value)
    assert "apt-get download -q hil-test-no-such-package=1.0" in message
    assert "apt-get update" in message
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".download-")]
    assert os.listdir(tmp_path) == []
