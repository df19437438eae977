"""ksdiff dataset check|info|folds|split|sync|emotion|people DIR"""

from __future__ import annotations

import argparse
import json

NAME = "dataset"
HELP = "check a dataset folder for every problem, or summarise it"
ORDER = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="report every problem in a dataset (exit 1 if any)")
    c.add_argument("dir")
    i = sub.add_parser("info", help="clips, hours, speakers, fps, per-channel ranges")
    i.add_argument("dir")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    f = sub.add_parser("folds", help="grouped k-fold cross-validation: K dataset folders (symlinks) under --out, "
                                     "each holding one fold out as its test split")
    f.add_argument("dir")
    f.add_argument("--out", required=True, help="folder for fold0 … fold<K-1> and folds.json")
    f.add_argument("-k", "--folds", type=int, default=4, help="number of folds (default 4)")
    f.add_argument("--groups", help='JSON {"person": [clip ids]}: clips of one person stay in one fold '
                                    "(default: each clip's meta.json speaker)")
    f.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("sync", help="find each clip's audio-video offset from its speech (tracked video, captures) "
                                    "and, with --apply, shift the motion to match the audio")
    s.add_argument("dir")
    sp = sub.add_parser("split", help="set the val and test clips (every other clip trains); with --groups a "
                                      "person's clips stay together")
    sp.add_argument("dir")
    sp.add_argument("--val", nargs="*", default=[], metavar="CLIP")
    sp.add_argument("--test", nargs="*", default=[], metavar="CLIP")
    sp.add_argument("--groups", metavar="JSON", help='{"person": ["clip id", ...]}: a named clip brings its person')
    pp = sub.add_parser("people", help="record who is who (meta.json person) from a JSON {person: [clip ids]}: "
                                       "clips of one person give each other reference styles in training")
    pp.add_argument("dir")
    pp.add_argument("--groups", required=True, metavar="JSON", help='{"person": ["clip id", ...], ...}')
    e = sub.add_parser("emotion", help="estimate valence/arousal per frame from each clip's facial motion and store "
                                       "it as the clip's emotion label (for training with emotion conditioning)")
    e.add_argument("dir")
    e.add_argument("--overwrite", action="store_true", help="re-estimate clips labelled by an earlier estimate "
                                                            "(exact labels, e.g. synthetic ones, are always kept)")
    s.add_argument("--apply", action="store_true", help="shift the motion of clips with a reliable offset "
                                                        "(recorded as av_sync in meta.json; never twice)")


def run(args: argparse.Namespace) -> int:
    from ksdiff.data.dataset import check_dataset, dataset_info

    if args.action == "folds":
        from ksdiff.data.folds import make_folds

        for d in make_folds(args.dir, args.folds, args.out, groups=args.groups, seed=args.seed):
            test = json.loads((d / "dataset.json").read_text(encoding="utf-8"))["splits"]["test"]
            print(f"{d}  test: {', '.join(test)}")
        return 0
    if args.action == "sync":
        return _sync(args)
    if args.action == "emotion":
        return _emotion(args)
    if args.action == "people":
        return _people(args)
    if args.action == "split":
        from ksdiff.data.folds import resplit

        splits = resplit(args.dir, args.val, args.test, args.groups)
        for name, ids in splits.items():
            print(f"{name:<6}{len(ids):>4}  {', '.join(ids)}")
        return 0
    if args.action == "check":
        problems = check_dataset(args.dir)
        for p in problems:
            print(p)
        if problems:
            print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {args.dir}")
            return 1
        print(f"{args.dir}: ok")
        return 0
    info = dataset_info(args.dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"dataset  {info['name']}  ({info['root']})")
    print(f"spec     {info['spec']}  at {info['fps']:g} fps")
    print("clips    " + ", ".join(f"{k} {v}" for k, v in info["clips"].items()))
    print(f"audio    {info['hours']:.3f} h ({info['seconds']:.1f} s), {info['frames']} motion frames")
    print(f"speakers {len(info['speakers'])}: {', '.join(info['speakers'][:10])}")
    print(f"{'channel':<22}{'min':>9}{'mean':>9}{'max':>9}")
    for ch, r in info["channels"].items():
        print(f"{ch:<22}{r['min']:>9.3f}{r['mean']:>9.3f}{r['max']:>9.3f}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from ksdiff.data.sync import SYNC_HEADER, SyncEstimate, sync_dataset, sync_line

    print(SYNC_HEADER)
    results = sync_dataset(args.dir, apply=args.apply,
                           progress=lambda cid, res: print(sync_line(cid, res, args.apply), flush=True))
    n = sum(isinstance(r, SyncEstimate) and r.lag_frames != 0 for _, r in results)
    print(f"{n} of {len(results)} clips out of sync" + (" (corrected)" if args.apply and n else ""))
    return 0


def _emotion(args: argparse.Namespace) -> int:
    from ksdiff.data.labels import label_emotion

    print(f"{'clip':<36}{'valence':>9}{'arousal':>9}  (mean over the clip)")

    def show(cid: str, va, what: str) -> None:
        print(f"{cid:<36}{va[:, 0].mean():>+9.2f}{va[:, 1].mean():>+9.2f}" if va is not None else
              f"{cid:<36}{'':>18}  {what}", flush=True)

    done = label_emotion(args.dir, overwrite=args.overwrite, progress=show)
    n = sum(v == "estimated" for v in done.values())
    print(f"labelled {n} of {len(done)} clips in {args.dir}")
    return 0


def _people(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ksdiff.data.dataset import open_dataset
    from ksdiff.data.folds import read_groups
    from ksdiff.errors import KsdiffError
    from ksdiff.utils.io import write_json

    ds = open_dataset(args.dir)
    person_of = read_groups(args.groups)
    known = set(ds.clip_ids())
    unknown = sorted(set(person_of) - known)
    if unknown:
        raise KsdiffError(f"the groups name clips this dataset lacks: {', '.join(unknown[:4])}", args.groups)
    for cid, person in person_of.items():
        clip = ds.clip(cid)
        write_json(Path(clip.root) / "meta.json", {**clip.meta(), "person": person})
    print(f"{args.dir}: {len(person_of)} clips of {len(set(person_of.values()))} people labelled "
          f"({len(known) - len(person_of)} clips keep their speaker)")
    return 0
