"""Shared test fixtures: the real data in ../shared (tests read it from there, never copy it)."""

from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread per process: the suite runs many small ops and some tests start subprocesses
# (CLI, torchrun); two threads per process oversubscribe a 2-core machine and can be 10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

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
