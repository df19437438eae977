"""Keyframes' upper bound: generate a dataset split with the model's own predicted keyframes and with the truth's
keyframes (Eq. 3 labels of the test motion, the same labels KEL is trained on) and score both. If the truth's
keyframes help and the predicted ones do not, the keyframe predictor is what limits KEL, not the denoiser's use of
keyframes. docs/RESULTS.md, "Table 3".
Usage: python scripts/oracle_keyframes.py CHECKPOINT DATASET OUT [--split test] [--style NAME] [--seeds 2] [--guidance G]"""

import argparse
from pathlib import Path

import numpy as np
import torch

import ksdiff
from ksdiff.evaluate import evaluate
from ksdiff.face.keyframes import keyframe_labels
from ksdiff.utils.io import write_json

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("data")
ap.add_argument("out", type=Path)
ap.add_argument("--split", default="test")
ap.add_argument("--style", default=None)
ap.add_argument("--seeds", type=int, default=2)
ap.add_argument("--guidance", type=float, default=None)
a = ap.parse_args()
animator = ksdiff.load_model(a.checkpoint)
kel = animator.model.cfg.kel
encode = animator.model.encode_condition
state: dict = {}


def with_truth(batch, num_frames, keyframes=None, generator=None, keyframe_prefix=None):
    """encode_condition with the truth's keyframes of the frames each window covers."""
    B = batch["feats"].shape[0]
    kf = torch.stack([state["kf"][s:s + int(num_frames)] for s in state["starts"][:B]])
    state["starts"] = state["starts"][B:]
    return encode(batch, num_frames, keyframes=kf)


results = {}
for mode in ("predicted", "truth"):
    def predict(clip, seed, mode=mode):
        text = clip.transcript()
        if text is None and not str(clip.meta().get("language") or "en").lower().startswith("en"):
            text = ""
        if mode == "truth":
            gt = clip.motion()
            labels = keyframe_labels(gt.coeffs, animator.spec, sigma=kel.label_sigma, kappa=kel.label_kappa,
                                     min_gap=kel.label_min_gap)
            state["kf"] = torch.from_numpy(np.asarray(labels, np.float32))
            T = gt.num_frames
            state["starts"] = [w.start for w in animator._plan(T, T / gt.fps, None, None)]
            animator.model.encode_condition = with_truth
        else:
            animator.model.encode_condition = encode
        try:
            return animator.animate(clip.audio(), text=text, seed=seed, style=a.style, guidance=a.guidance,
                                    num_frames=clip.motion().num_frames)
        finally:
            animator.model.encode_condition = encode

    predict.source = lambda clip: animator.path
    r = evaluate(a.data, predict, split=a.split, seeds=tuple(range(a.seeds)), plots=False, progress=False,
                 out=a.out / mode, name=f"keyframes {mode}")
    results[mode] = {k: r.mean.get(k) for k in ("lve_mm", "jaw_r", "fdd_mm", "artic_ratio", "kf_f1_expr",
                                                 "kf_f1_head")}
    print(mode, results[mode], flush=True)
write_json(a.out / "oracle.json", results)
