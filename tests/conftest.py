"""Shared test fixtures: the real data in ../shared (tests read it from there, never copy it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KSDIFF_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.fail(f"../shared/data not found at {SHARED}: the tests need the project's shared data beside the repo "
                    "(or KSDIFF_SHARED=/path/to/shared)")
    return SHARED


@pytest.fixture(scope="session")
def speech_dir(shared: Path) -> Path:
    return shared / "data" / "speech"


@pytest.fixture(scope="session")
def ict_path(shared: Path) -> Path:
    return shared / "assets" / "ict-facekit" / "ict_face.npz"
