"""ksdiff prepare DATASET --encoder NAME [--tokens phonemes|chars|none] [--transcribe/--no-transcribe]"""

from __future__ import annotations

import argparse

NAME = "prepare"
HELP = "compute and cache speech features, prosody, tokens and keyframe labels for every clip of a dataset"
DESCRIPTION = """Run the audio front-end on every clip of a dataset and cache the results in
DATASET/.cache/features/<key>/<clip>.npz (key = encoder + settings). Resumable: clips already cached with the
same settings and unchanged audio/transcript are skipped; interrupting leaves only whole files.

Tokens come from the clip's transcript.txt, or from the automatic Whisper transcript (cached too) when there is
none and --transcribe is on. Keyframe labels are computed from each clip's motion.

encoders: whisper-tiny (default, 384-d), mel (80-d, no weights), hf:<local folder> (wav2vec2/HuBERT/WavLM;
hf:<folder>@<layer> picks a hidden layer)."""
ORDER = 25


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("dataset", help="dataset folder")
    p.add_argument("--encoder", default="whisper-tiny", help="speech encoder (default whisper-tiny)")
    p.add_argument("--tokens", choices=["phonemes", "chars", "none"], default="phonemes",
                   help="transcript tokens (phonemes need the optional 'phonemes' extra; default phonemes)")
    p.add_argument("--transcribe", action=argparse.BooleanOptionalAction, default=True,
                   help="transcribe clips without transcript.txt automatically (default on)")
    p.add_argument("--language", default="en-us", help="espeak-ng voice for phoneme tokens (default en-us)")
    p.add_argument("--split", default=None, help="only this split (train/val/test; default all clips)")
    p.add_argument("--compute-type", choices=["float32", "int8"], default=None,
                   help="whisper-tiny: CTranslate2 compute type (default float32)")
    p.add_argument("--force", action="store_true", help="recompute every clip even when cached")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ksdiff.data.features import prepare_dataset

    opts = {"compute_type": args.compute_type} if args.compute_type else {}
    s = prepare_dataset(args.dataset, encoder=args.encoder, tokens=args.tokens, transcribe=args.transcribe,
                        language=args.language, split=args.split, force=args.force, progress=not args.quiet, **opts)
    print(f"cache    {s['cache_dir']}")
    print(f"clips    {s['clips']}: {s['computed']} computed, {s['skipped']} already cached"
          + (f", {s['keyframes_updated']} keyframes refreshed" if s["keyframes_updated"] else ""))
    print(f"audio    {s['seconds']:.1f} s in {s['elapsed']:.1f} s")
    if s["no_text"]:
        print(f"note     {s['no_text']} clip(s) have no transcript, so no tokens "
              "(add transcript.txt or use --transcribe)")
    if not s["keyframes"]:
        print("note     keyframe labels skipped (ksdiff.model.keyframes not importable)")
    return 0
