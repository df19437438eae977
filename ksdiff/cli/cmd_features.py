"""ksdiff features AUDIO [--encoder NAME] [--text TEXT] [--tokens KIND] [--save OUT.npz]"""

from __future__ import annotations

import argparse

NAME = "features"
HELP = "run the audio front-end on one file and print a summary (frames, voicing, transcript, timings)"
ORDER = 26


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", help="audio or video file (any format PyAV reads)")
    p.add_argument("--encoder", default="whisper-tiny", help="whisper-tiny (default), mel or hf:<local folder>")
    p.add_argument("--text", default=None, help="transcript (default: automatic, Whisper tiny.en)")
    p.add_argument("--tokens", choices=["phonemes", "chars", "none"], default="phonemes",
                   help="transcript tokens (default phonemes; falls back to chars when the extra is missing)")
    p.add_argument("--transcribe", action=argparse.BooleanOptionalAction, default=True,
                   help="transcribe automatically when --text is not given (default on)")
    p.add_argument("--language", default="en-us", help="espeak-ng voice for phoneme tokens (default en-us)")
    p.add_argument("--compute-type", choices=["float32", "int8"], default=None,
                   help="whisper-tiny: CTranslate2 compute type (default float32)")
    p.add_argument("--save", metavar="OUT.npz", help="also write the features to this file")
    p.add_argument("--max-seconds", type=float, default=None, metavar="SEC",
                   help="refuse audio longer than SEC seconds (default: no limit)")


def run(args: argparse.Namespace) -> int:
    import time

    from ksdiff.audio.encoders import get_encoder
    from ksdiff.audio.features import compute_features, load_speech, save_features
    from ksdiff.audio.tokens import tokens_to_text
    from ksdiff.errors import KsdiffError
    from ksdiff.utils.io import check_writable_file

    if args.max_seconds is not None and not args.max_seconds > 0:
        raise KsdiffError(f"--max-seconds must be positive, got {args.max_seconds:g}")
    if args.save:
        check_writable_file(args.save)  # before any compute
    t0 = time.perf_counter()
    wave = load_speech(args.audio, max_seconds=args.max_seconds)  # generate's rules: long enough, not silent
    t_decode = time.perf_counter() - t0
    opts = {"compute_type": args.compute_type} if args.compute_type else {}
    t0 = time.perf_counter()
    enc = get_encoder(args.encoder, **opts).load()
    t_load = time.perf_counter() - t0
    tokens = args.tokens
    note = ""
    try:
        sf = compute_features(wave, enc, text=args.text, tokens=tokens, transcribe=args.transcribe,
                              language=args.language)
    except KsdiffError as e:
        if tokens != "phonemes" or "phonemes" not in str(e):
            raise
        tokens, note = "chars", " (phonemizer extra not installed: characters)"
        sf = compute_features(wave, enc, text=args.text, tokens=tokens, transcribe=args.transcribe,
                              language=args.language)
    i = sf.info
    print(f"audio      {args.audio}")
    print(f"duration   {i['seconds']:.2f} s")
    print(f"encoder    {sf.encoder}: {sf.num_frames} frames x {sf.dim} at {sf.rate:g} Hz")
    print(f"prosody    voiced {100 * i['voiced_fraction']:.1f} %, f0 median {i['f0_median_hz']:.1f} Hz")
    text = sf.text if len(sf.text) <= 300 else sf.text[:297] + "..."
    src = "given" if args.text is not None else ("automatic" if sf.text else "none")
    print(f"transcript ({src}) {text!r}" + (f", {len(sf.words)} timed words" if sf.words else ""))
    shown = tokens_to_text(sf.tokens[:40], tokens) if len(sf.tokens) else ""
    print(f"tokens     {len(sf.tokens)} {tokens}{note}" + (f": {shown}{' ...' if len(sf.tokens) > 40 else ''}"
                                                          if shown else ""))
    stages = [("decode", t_decode), ("load", t_load)] + [(k[5:], v) for k, v in i.items() if k.startswith("time_")]
    total = sum(v for _, v in stages)
    print("seconds    " + ", ".join(f"{k} {v:.2f}" for k, v in stages) + f"; total {total:.2f}"
          + (f" ({total / i['seconds']:.2f} s per s of audio)" if i["seconds"] else ""))
    if args.save:
        save_features(args.save, sf)
        print(f"saved      {args.save}")
    return 0
