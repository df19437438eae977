"""Tables of scripts/variants.sh: per variant, mean ± std over seeds of the test metrics (LVE, jawOpen r on the
FACEGOOD and synthetic test splits; jawOpen-envelope r and jawOpen std on real speech, when measured) and of the
last validation's diagnostics (speech dependence of the expression loss, cross-attention mass of the expression
path; of the single denoiser for a model without the dual path); then every seed.
Usage: python scripts/variants_table.py OUT RUNS"""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

out, runs = Path(sys.argv[1]), Path(sys.argv[2])
rows: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
for run in sorted(runs.glob("*-s*")):
    m = re.fullmatch(r"(.+)-s(\d+)", run.name)
    if not m or not run.is_dir():
        continue
    v, seed = m.group(1), int(m.group(2))
    r: dict[str, float] = {}
    g = out / "guidance" / f"{run.name}.txt"  # chosen on the val split (variants.sh GUIDANCES)
    if g.is_file():
        r["guidance"] = float(g.read_text())
    for name in ("facegood", "synth"):
        p = out / name / run.name / "metrics.json"
        if p.is_file():
            mean = json.loads(p.read_text())["mean"]
            r[f"{name} LVE"] = mean.get("lve_mm", float("nan"))
            r[f"{name} jaw r"] = mean.get("jaw_r", float("nan"))
            if name == "synth":  # the rest of the paper's Table 3 where the truth has them (head, eyes, brows)
                for k, col in (("fdd_mm", "synth FDD"), ("head_div_deg", "synth head div"),
                               ("beat_align", "synth beat align"), ("bilabial_closure", "synth p/b/m closed")):
                    r[col] = mean.get(k, float("nan"))
    p = out / "speech" / run.name / "metrics.json"
    if p.is_file():
        mean = json.loads(p.read_text())["mean"]
        r["speech env r"], r["speech jaw std"] = mean["env_r"], mean["jaw_std"]
    val = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"val"' in line]
    if val:
        last = val[-1]
        p = "e" if "speech_dep/diff_e" in last else "all"  # w/o dual path: one denoiser for every channel
        r["speech dep (diff_e)"] = last.get(f"speech_dep/diff_{p}", float("nan"))
        r["attn speech (e)"] = last.get(f"attn/{p}/speech", float("nan"))
        r["attn text (e)"] = last.get(f"attn/{p}/text", float("nan"))
        r["text gate (e)"] = last.get(f"attn/{p}/text_gate", float("nan"))
        r["val loss"] = last.get("loss", float("nan"))
    rows[v][seed] = r

cols = ["guidance"] * any("guidance" in r for by_seed in rows.values() for r in by_seed.values()) + [
        "facegood LVE", "facegood jaw r", "synth LVE", "synth jaw r", "speech env r", "speech jaw std",
        "speech dep (diff_e)", "attn speech (e)",
        "attn text (e)", "text gate (e)", "val loss"]


def fmt(xs: list[float]) -> str:
    xs = [x for x in xs if np.isfinite(x)]
    if not xs:
        return "–"
    return f"{np.mean(xs):.3f} ± {np.std(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def table(columns: list[str], per_seed: bool = False) -> None:
    """One Markdown table: a row per variant (mean ± std over seeds, with the seed count) or per run."""
    first = ["run"] if per_seed else ["variant", "seeds"]
    print("| " + " | ".join(first + columns) + " |")
    print("|" + "---|" * (len(first) + len(columns)))
    for v, by_seed in rows.items():
        if per_seed:
            for seed, r in sorted(by_seed.items()):
                print(f"| {v} s{seed} | " + " | ".join(f"{r.get(c, float('nan')):.3f}" for c in columns) + " |")
        else:
            cells = [fmt([r.get(c, float("nan")) for r in by_seed.values()]) for c in columns]
            print(f"| {v} | {len(by_seed)} | " + " | ".join(cells) + " |")
    print()


table(cols)
table(["synth FDD", "synth head div", "synth beat align", "synth p/b/m closed"])
table(cols, per_seed=True)
