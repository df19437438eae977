"""Shared test fixtures: the real data in ../shared (tests read it from there, never copy it)."""

from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread per process: the suite runs many small ops and some tests start subprocesses
# (CLI, torchrun); two threads per process oversubscribe a 2-core machine and can be 10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Caches ksdiff writes (the ICT head's visible triangles) go to a folder of this test session, not ~/.cache.
if "KSDIFF_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["KSDIFF_CACHE_DIR"] = tempfile.mkdtemp(prefix="ksdiff-test-cache-")
    atexit.register(shutil.rmtree, os.environ["KSDIFF_CACHE_DIR"], ignore_errors=True)

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


#: A model small enough to train and run in a second: the default config at D = 32 with mel features.
TINY_MODEL_YAML = """\
include: default
audio: {encoder: mel, tokens: chars, transcribe: false}
model:
  dim: 32
  dpse_cfg: {dilations: [1, 2], groups: 4, heads: 2, ffn_mult: 2}
  kel: {layers: 1, heads: 2}
  text: {layers: 1, heads: 2, vocab_size: 64}
  denoiser: {layers: 1, heads: 4, ffn_dim: 64}
"""


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> Path:
    """The path of a config file holding :data:`TINY_MODEL_YAML`."""
    p = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    p.write_text(TINY_MODEL_YAML)
    return p
