"""ksdiff render MOTION --audio A --out V.mp4 [--face ict|flame|schematic] [--gt MOTION2 | --panel M2 --panel M3
--labels "a,b,c"] [--size 512]"""

from __future__ import annotations

import argparse

NAME = "render"
HELP = "render a motion file as an mp4 with its audio (ICT-FaceKit, FLAME or the 2D schematic face)"
ORDER = 70


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("motion", help="motion .npz (its fps, 1 to 240, is the video's)")
    p.add_argument("--audio", help="speech to put in the video (any format); the video lasts as long as it")
    p.add_argument("--out", required=True, help="the .mp4 to write")
    p.add_argument("--face", default="auto", choices=["auto", "ict", "flame", "schematic"],
                   help="face model (auto: the 3D model for the motion's spec if its asset is found, else schematic)")
    p.add_argument("--gt", help="a ground-truth motion shown to the right ('prediction | ground truth')")
    p.add_argument("--panel", action="append", default=[], metavar="MOTION",
                   help="another motion shown to the right (repeatable: e.g. the same speech at three emotions)")
    p.add_argument("--labels", help="comma-separated panel labels, left to right (with --panel; default: the files' "
                                    "names)")
    p.add_argument("--size", type=int, default=512, help="panel height and width in pixels (default 512)")
    p.add_argument("--backend", default="auto", choices=["auto", "gl", "numpy"],
                   help="rasteriser: OpenGL on EGL, or the numpy fallback (auto: GL when available)")
    p.add_argument("--asset", help="face model file (ICT ict_face.npz or a converted FLAME .npz)")
    p.add_argument("--antialias", action="store_true", help="4x MSAA (GL backend; slower)")
    p.add_argument("--all-triangles", action="store_true",
                   help="draw every triangle of the ICT head, also those the camera never sees (slower; by default "
                        "they are skipped for motion inside the range they were measured for)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ksdiff.errors import KsdiffError
    from ksdiff.render import LABELS, render_video

    if args.gt and args.panel:
        raise KsdiffError("--gt and --panel do not go together: give the ground truth as a --panel")
    side = args.panel or args.gt
    labels = LABELS
    if args.panel:
        labels = tuple(x.strip() for x in args.labels.split(",")) if args.labels else \
            tuple(Path(m).stem for m in [args.motion, *args.panel])
    info = render_video(args.motion, args.audio, args.out, face=args.face, size=args.size, side_by_side=side,
                        backend=args.backend, asset=args.asset, antialias=args.antialias, labels=labels,
                        skip_hidden=not args.all_triangles)
    print(f"{info['path']}: {info['frames']} frames at {info['fps']:g} fps ({info['video_seconds']:.2f} s), "
          f"face {info['face']}, backend {info['backend']}, {info['render_fps']:.1f} frames/s")
    return 0
