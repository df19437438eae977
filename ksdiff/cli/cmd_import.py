"""ksdiff import KIND SRC... --out DATASET [--fps 25] [--force]"""

from __future__ import annotations

import argparse

NAME = "import"
HELP = "import motion + audio (Live Link Face, FACEGOOD, DECA/EMOCA, npz) into a dataset folder"
DESCRIPTION = """Import real motion sources into the ksdiff dataset format (16 kHz mono wav + motion.npz per clip).

kinds:
  livelink  Live Link Face CSV files (audio: same-stem .wav/.mov beside each, or --audio), take folders,
            or folders of take folders                                                  -> arkit
  facegood  the FACEGOOD-Audio2Face data folder (bs_value/, wav/, arkit_mapping.csv)    -> arkit
  deca      DECA/EMOCA codes: clip folders (one npz with exp/pose/cam, per-frame npz files or per-frame
            folders with exp.npy/pose.npy/cam.npy) or npz files, audio beside or --audio -> flame
  npz       motion npz files with coeffs, channels, fps (+ spec or --spec), audio beside or --audio

Motion is resampled to --fps (rotations by slerp) and trimmed/padded to the audio's length."""
ORDER = 15


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("kind", choices=["livelink", "facegood", "deca", "npz"], help="source format")
    p.add_argument("src", nargs="+", help="source files or folders")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--fps", type=float, default=25.0, help="dataset motion frame rate (default 25)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--audio", action="append", metavar="FILE",
                   help="audio (or video) for a source, once per clip in order (livelink, deca, npz)")
    p.add_argument("--src-fps", type=float, default=None,
                   help="deca: frame rate of the codes (default: the npz's fps if it has one, else 25)")
    p.add_argument("--spec", choices=["arkit", "flame"], help="npz: face spec when the files do not say")
    p.add_argument("--fill-missing", action="store_true", help="npz: set channels the file lacks to 0")
    p.add_argument("--speaker", help="speaker name for meta.json (facegood default: facegood_shirley)")
    p.add_argument("--name", help="dataset name (default: the folder name)")


def run(args: argparse.Namespace) -> int:
    from ksdiff.data.importers import import_dataset

    def progress(clip) -> None:
        m = clip.motion
        print(f"  {clip.id}: {m.num_frames} frames ({m.duration:.2f} s) from {clip.source}", flush=True)
        for note in clip.notes:
            print(f"    note: {note}", flush=True)

    print(f"importing {args.kind} -> {args.out}", flush=True)
    ds = import_dataset(args.kind, args.src, args.out, fps=args.fps, force=args.force, name=args.name,
                        spec=args.spec, progress=progress, audio=args.audio, src_fps=args.src_fps,
                        speaker=args.speaker, fill_missing=args.fill_missing)
    n = len(ds.clip_ids())
    print(f"wrote {n} clip{'s' if n != 1 else ''} ({', '.join(f'{k} {len(v)}' for k, v in ds.splits.items())}) "
          f"to {ds.root}: spec {ds.spec}, {ds.fps:g} fps")
    return 0
