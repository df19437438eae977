"""ksdiff assets ict|flame: build face-model assets from the user's own files."""

from __future__ import annotations

import argparse

NAME = "assets"
HELP = "build face assets: the ICT-FaceKit head from a checkout, or a FLAME .npz from your generic_model.pkl"
ORDER = 80


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="asset", metavar="ASSET", required=True)
    i = sub.add_parser("ict", help="build ict_face.npz from an ICT-FaceKit checkout (FaceXModel/*.obj)")
    i.add_argument("--src", required=True, help="the ICT-FaceKit checkout (or its FaceXModel folder)")
    i.add_argument("--out", help="where to write (default: <user data dir>/ict_face.npz, found automatically)")
    f = sub.add_parser("flame", help="convert FLAME's generic_model.pkl (chumpy pickle) into a .npz "
                                     "(restricted unpickler: arrays only)")
    f.add_argument("--pkl", required=True, help="FLAME generic_model.pkl (from flame.is.tue.mpg.de)")
    f.add_argument("--out", help="where to write (default: <user data dir>/flame.npz, found automatically)")
    f.add_argument("--num-shape", type=int, help="identity components in shapedirs (default: 300 for FLAME 2020)")


def run(args: argparse.Namespace) -> int:
    from ksdiff.face.base import user_data_dir

    if args.asset == "ict":
        from ksdiff.face.ict import ICT_ASSET_NAME, build_ict_asset

        out = args.out or str(user_data_dir() / ICT_ASSET_NAME)
        info = build_ict_asset(args.src, out)
        print(f"{info['path']}: {info['vertices']} vertices, {info['triangles']} triangles, "
              f"{info['expressions']} expressions, {info['identities']} identity shapes")
        return 0
    from ksdiff.face.flame import FLAME_ASSET_NAME, convert_flame_pkl

    out = args.out or str(user_data_dir() / FLAME_ASSET_NAME)
    info = convert_flame_pkl(args.pkl, out, num_shape=args.num_shape)
    print(f"{info['path']}: {info['vertices']} vertices, {info['faces']} faces, {info['shape']} shape and "
          f"{info['expression']} expression components (keep it private: FLAME's licence forbids sharing it)")
    return 0
