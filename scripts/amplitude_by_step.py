"""Where the mouth's amplitude is lost: a checkpoint's x0 prediction at fixed diffusion steps t (given the truth
diffused to t) and after the sampler, on crops of a dataset split, as articulation (per mouth channel, predicted
std / truth std; median over the channels that move, and mouthPressLeft / mouthPucker alone) and the median r.

A denoiser that has learnt its job returns the truth at t = 0 (ratio 1) and shrinks towards the conditional mean
as t grows; a sampler run then keeps the amplitude of the low-noise steps. docs/RESULTS.md, "Why the mouth was flat".
Usage: python scripts/amplitude_by_step.py CHECKPOINT DATASET [--split val] [--crops 8] [--steps 20]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ksdiff.config import from_dict
from ksdiff.diffusion.samplers import sample_ddim
from ksdiff.diffusion.schedule import q_sample
from ksdiff.metrics.articulation import MIN_TRUTH_STD, mouth_channels
from ksdiff.train.checkpoint import model_from_checkpoint
from ksdiff.train.config import RunConfig
from ksdiff.train.data import ClipCrops, collate, load_clips, open_datasets
from ksdiff.train.loop import crops_kwargs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("dataset")
    ap.add_argument("--split", default="val")
    ap.add_argument("--crops", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    torch.manual_seed(0)
    model, cfgd = model_from_checkpoint(a.checkpoint)
    cfg = from_dict(RunConfig, {k: v for k, v in cfgd.items() if k in RunConfig.__dataclass_fields__}, "")
    dss, spec = open_datasets([a.dataset])
    clips = load_clips(dss, a.split, spec, cfg.model.fps, cfg.audio.encoder, cfg.audio.tokens, transcribe=False)
    crops = ClipCrops(clips, **crops_kwargs(cfg))
    batch = collate([crops[(i % len(clips), i)] for i in range(a.crops)], crops.fps, crops.rate)
    names = mouth_channels(spec.channels)
    idx = [spec.channels.index(n) for n in names]
    motion = batch["motion"]
    B, T, _ = motion.shape
    G = motion[..., idx].reshape(-1, len(idx)).numpy()
    keep = G.std(0) >= MIN_TRUTH_STD

    def row(label: str, x0n: torch.Tensor) -> None:
        P = model.denormalize(x0n)[..., idx].reshape(-1, len(idx)).numpy()
        ratio = P.std(0) / np.maximum(G.std(0), 1e-9)
        r = [np.corrcoef(P[:, j], G[:, j])[0, 1] for j in np.where(keep)[0]]
        one = {n: ratio[names.index(n)] for n in ("jawOpen", "mouthPressLeft", "mouthPucker")}
        print(f"| {label} | {np.median(ratio[keep]):.3f} | {one['jawOpen']:.3f} | {one['mouthPressLeft']:.3f} | "
              f"{one['mouthPucker']:.3f} | {np.nanmedian(r):.2f} |")

    with torch.no_grad():
        cond = model.encode_condition({k: v for k, v in batch.items() if k != "keyframes"}, T)  # as at inference
        x0 = model.normalize(motion)
        print(f"{B} crops of {a.dataset} ({a.split}), {int(keep.sum())} moving mouth channels\n")
        print("| x0 prediction | median ratio | jawOpen | mouthPressLeft | mouthPucker | median r |")
        print("|---|---:|---:|---:|---:|---:|")
        for t in (0, 10, 100, 300, 600, 999):
            tt = torch.full((B,), t, dtype=torch.long)
            row(f"one step, t = {t}", model.denoise(q_sample(model.schedule, x0, tt, torch.randn_like(x0)), tt, cond))
        g = float(cfgd.get("generation", {}).get("guidance", 1.0))
        x = torch.randn_like(x0)
        row(f"DDIM {a.steps} steps, guidance {g:g}",
            sample_ddim(lambda xt, t: model.denoise(xt, t, cond, guidance=g), x, model.schedule, a.steps))


if __name__ == "__main__":
    main()
