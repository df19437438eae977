"""ksdiff track VIDEO... --out DATASET: talking-face videos -> an ``arkit`` dataset with the MediaPipe tracker."""

from __future__ import annotations

import argparse
import sys

NAME = "track"
HELP = "track faces in talking-face videos (MediaPipe) into an arkit dataset"
DESCRIPTION = (
    "Track the face in each video with the MediaPipe Face Landmarker (52 ARKit blendshapes + head pose), take "
    "the audio from the same file, and write a dataset (one clip per video). Folders are searched recursively "
    "for videos. A video with too many frames without a face is refused (the others are still imported; the "
    "exit code is then 2). Needs `pip install ksdiff[track]`."
)
ORDER = 15


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders (searched recursively)")
    p.add_argument("--out", required=True, metavar="DATASET", help="dataset folder to write")
    p.add_argument("--fps", type=float, default=25.0, help="motion frame rate of the dataset (default 25)")
    p.add_argument("--model", metavar="PATH", default=None,
                   help="face_landmarker.task (default: $KSDIFF_FACE_LANDMARKER, else ../shared/assets beside "
                        "the repository)")
    p.add_argument("--max-gap-s", type=float, default=0.5,
                   help="longest run without a face that is filled by interpolation, seconds (default 0.5)")
    p.add_argument("--max-missing", type=float, default=0.2,
                   help="largest fraction of frames without a face before a clip is refused (default 0.2)")
    p.add_argument("--max-seconds", type=float, default=None, help="track only the first S seconds of each video")
    p.add_argument("--force", action="store_true", help="replace DATASET if it exists")
    p.add_argument("--sync", action="store_true",
                   help="then find each clip's audio-video offset from its speech and shift the motion to match "
                        "(ksdiff dataset sync --apply; English speech; docs/TRACKER.md)")


def run(args: argparse.Namespace) -> int:
    from ksdiff.data.tracker import jaw_envelope_correlation, track_videos
    from ksdiff.errors import KsdiffError

    def on_clip(clip) -> None:
        print(clip.summary(), flush=True)

    def on_refused(path, reason: str) -> None:
        print(f"ksdiff: {reason}", file=sys.stderr, flush=True)

    summary = track_videos(args.videos, args.out, fps=args.fps, model=args.model, max_gap_s=args.max_gap_s,
                           max_missing=args.max_missing, force=args.force, max_seconds=args.max_seconds,
                           on_clip=on_clip, on_refused=on_refused)
    tracked = sum(c.result.num_tracked for c in summary.clips)
    frames = sum(c.result.num_frames for c in summary.clips)
    secs = sum(c.result.seconds for c in summary.clips)
    corr = jaw_envelope_correlation(summary.out)
    mean_r = sum(corr.values()) / len(corr)
    print(f"wrote {summary.out}: {len(summary.clips)} clips, {tracked}/{frames} frames with a face "
          f"({1000 * secs / max(frames, 1):.1f} ms/frame); jawOpen-envelope r mean {mean_r:.2f} "
          f"(" + ", ".join(f"{k} {v:.2f}" for k, v in corr.items()) + ")")
    if args.sync:
        from ksdiff.data.sync import SYNC_HEADER, sync_dataset, sync_line

        print(SYNC_HEADER)
        sync_dataset(summary.out, apply=True, progress=lambda cid, res: print(sync_line(cid, res, True), flush=True))
    if summary.refused:
        names = ", ".join(str(p) for p, _ in summary.refused)
        err = KsdiffError(f"refused {len(summary.refused)} of {len(summary.refused) + len(summary.clips)} "
                          f"videos: {names}")
        print(f"ksdiff: {err}", file=sys.stderr)
        return err.exit_code
    return 0
