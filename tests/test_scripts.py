"""The analysis scripts the results rest on (scripts/crossval_nested.py, scripts/compare_sync.py,
scripts/set_generation.py, scripts/lip_contact.py), on reports written here with known answers or on the shipped
model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True)
    return out.stdout


def _report(path: Path, per_clip: dict[str, float]) -> None:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({"per_clip": {c: {"lve_mm": v} for c, v in per_clip.items()}}))


def test_crossval_nested_chooses_each_folds_setting_on_the_other_folds(tmp_path: Path) -> None:
    """Fold k's choice is the method best on the other folds' people, never on its own: `sharp` wins on folds 0-2
    and loses badly on fold 3, so folds 0-2 (whose other folds include fold 3) choose `soft`, and fold 3 (whose
    other folds do not) gets `sharp` and its bad score, not the `soft` that would have been better there."""
    groups = {f"c{k}{i}": f"p{k}{i}" for k in range(4) for i in range(2)}
    (tmp_path / "folds.json").write_text(json.dumps({"k": 4, "groups": groups}))
    for k in range(4):
        clips = [f"c{k}{i}" for i in range(2)]
        _report(tmp_path / "r" / f"fold{k}" / "static", {c: 5.0 for c in clips})
        _report(tmp_path / "r" / f"fold{k}" / "sharp", {c: 3.0 if k < 3 else 9.0 for c in clips})
        _report(tmp_path / "r" / f"fold{k}" / "soft", {c: 4.0 for c in clips})
    out = _run(str(SCRIPTS / "crossval_nested.py"), str(tmp_path / "r"), "sharp,soft", str(tmp_path / "folds.json"))
    choices = [line.rsplit("-> ", 1)[1] for line in out.splitlines() if line.startswith("fold")]
    assert choices == ["soft", "soft", "soft", "sharp"]  # folds 0-2: sharp (3 + 3 + 9) / 3 = 5 > soft 4
    mean = (3 * 4.0 + 9.0) / 4  # folds 0-2 scored with soft (4.0), fold 3 with sharp (9.0)
    assert f"nested choice: {mean:.3f} mm per person vs static 5.000: {mean - 5:+.3f}" in out


def test_compare_sync_pairs_clips_and_averages_seeds(tmp_path: Path) -> None:
    def sync(name: str, env: list[float]) -> str:
        p = tmp_path / name / "metrics.json"
        p.parent.mkdir()
        clips = {f"c{i}.wav": {"env_r": e, "jaw_std": 0.1, "mouth_std": 0.01, "bilabial_closure": float("nan")}
                 for i, e in enumerate(env)}
        p.write_text(json.dumps({"clips": clips}))
        return str(p)

    a = sync("a", [0.5, 0.6, 0.7])
    b1, b2 = sync("b1", [0.6, 0.7, 0.8]), sync("b2", [0.6, 0.9, 0.8])
    out = _run(str(SCRIPTS / "compare_sync.py"), a, f"{b1},{b2}")
    row = next(line for line in out.splitlines() if line.startswith("| env_r"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[0] == "env_r (3 clips)" and float(cells[1]) == pytest.approx(0.6, abs=1e-3)
    assert float(cells[2]) == pytest.approx((0.6 + 0.8 + 0.8) / 3, abs=1e-3)  # seeds averaged per clip first
    assert float(cells[3]) == pytest.approx((0.1 + 0.2 + 0.1) / 3, abs=1e-3)
    assert "bilabial_closure" not in out  # no clip has it
    bad = subprocess.run([sys.executable, str(SCRIPTS / "compare_sync.py"), a, str(tmp_path / "a")],
                         capture_output=True, text=True)  # a folder, not a report
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith(f"compare_sync: {tmp_path / 'a'}: not a scripts/speech_sync.py report")


def test_set_generation_changes_defaults_not_weights(tmp_path: Path) -> None:
    """scripts/set_generation.py: the shipped checkpoint with other generation defaults and styles, the weights
    byte-identical; an unknown style or key is refused in one line and writes nothing."""
    from safetensors.numpy import load_file

    from ksdiff.generate import DEFAULT_CHECKPOINT, load_model

    out = tmp_path / "ck.safetensors"
    _run(str(SCRIPTS / "set_generation.py"), str(DEFAULT_CHECKPOINT), str(out), "generation.smooth=0",
         "generation.guidance=2", "data.default_style=synth", "data.reference_style=video")
    anim = load_model(out)
    assert anim.defaults["smooth"] == 0.0 and anim.defaults["guidance"] == 2.0 and anim.defaults["steps"] == 4
    assert anim.default_style == "synth" and anim.reference_style == "video"
    a, b = load_file(str(DEFAULT_CHECKPOINT)), load_file(str(out))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    for bad in ("data.default_style=nobody", "generation.smooth=-1", "model.dim=3"):
        r = subprocess.run([sys.executable, str(SCRIPTS / "set_generation.py"), str(DEFAULT_CHECKPOINT),
                            str(tmp_path / "bad.safetensors"), bad], capture_output=True, text=True)
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "bad.safetensors").exists()


def test_lip_contact_counts_crossed_lips(tmp_path: Path, speech_dir: Path, ict_path: Path) -> None:
    """scripts/lip_contact.py on the shipped model and one real clip: with FaceSpec.clip no frame has mouthClose above
    jawOpen and no lips cross by 3 mm; --raw reports the network's own output the same way."""
    from ksdiff.generate import DEFAULT_CHECKPOINT

    folder = tmp_path / "speech"
    folder.mkdir()
    (folder / "arctic_a0009.wav").symlink_to(speech_dir / "arctic_a0009.wav")
    rows = {}
    for extra in ([], ["--raw"]):
        out = _run(str(SCRIPTS / "lip_contact.py"), "--checkpoint", str(DEFAULT_CHECKPOINT), "--speech", str(folder),
                   *extra)
        cells = [c.strip() for c in out.strip().splitlines()[-1].strip("|").split("|")]
        rows[bool(extra)] = cells
    frames, over, crossed1, crossed3, deepest = rows[False][1:]
    assert int(frames) == int(rows[True][1]) > 50
    assert over == "0.0%" and crossed3 == "0.0%" and float(deepest) > -3
    assert "(raw)" in rows[True][0] and float(rows[True][5]) <= float(deepest)
