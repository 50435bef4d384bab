"""Shared fixtures: the reference guest (built once, offline from Debian packages) and helpers."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_hil_state(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Run folders of tests go to pytest's temp area, not the user's state folder."""
    if "HIL_STATE_DIR" not in os.environ:
        os.environ["HIL_STATE_DIR"] = str(tmp_path_factory.mktemp("hil-state"))


@pytest.fixture(scope="session")
def reference_image():
    from hil.image.reference import build_reference, load_reference

    return load_reference() or build_reference()
