"""``uniformer data``: write a synthetic data set, or check a real one.

    uniformer data synth imagenet --out DIR --classes N --train-per-class K --val-per-class V --size S --seed X
    uniformer data synth kinetics|ssv2|ssv1 --out DIR [--classes N --train-per-class K --val-per-class V
                                                      --frames F --size S --seed X]
    uniformer data check imagenet --root DIR [--workers W]
    uniformer data check kinetics400|kinetics600|ssv1|ssv2 --root DIR [--list FILE ...]
                         [--class-index FILE [FILE]] [--labels JSON] [--frame-template T] [--workers W]

Each data set registers, in ``DATASETS``, its ``synth`` options and action and/or its ``check`` options and
action (the synthetic ``kinetics`` set is checked as ``kinetics400``/``kinetics600``). Heavy imports happen
inside the actions.
"""
import argparse
import sys
from dataclasses import dataclass
from typing import Callable, Optional


def _imagenet_synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (a previous synthetic set there is replaced)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=40)
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)


def _imagenet_synth(args) -> int:
    from .synth_imagenet import write_synthetic_imagenet

    try:
        manifest = write_synthetic_imagenet(args.out, args.classes, args.train_per_class, args.val_per_class,
                                            args.size, args.seed)
    except (ValueError, FileExistsError) as e:  # bad arguments or a foreign folder: a message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(manifest['files'])} images, {args.classes} classes, sha256 {manifest['sha256']}")
    return 0


def _imagenet_check(args):
    from .check import check_imagenet

    return check_imagenet(args.root, workers=args.workers)


def _root_and_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="data set root folder")
    p.add_argument("--workers", type=int, default=0, help="decode in this many processes")


VIDEO_SYNTH_DEFAULTS = {  # dataset -> (classes, train/class, val/class, frames)
    "kinetics": (5, 8, 4, 32),
    "ssv2": (4, 8, 4, 16),
    "ssv1": (4, 8, 4, 16),
}


def _video_synth_arguments(name: str):
    classes, train, val, frames = VIDEO_SYNTH_DEFAULTS[name]

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, help="output folder (a previous synthetic set there is replaced)")
        p.add_argument("--classes", type=int, default=classes)
        p.add_argument("--train-per-class", type=int, default=train)
        p.add_argument("--val-per-class", type=int, default=val)
        p.add_argument("--frames", type=int, default=frames,
                       help="frames per video" + (" (SSV: minimum; lengths vary up to 1.5x)" if name != "kinetics"
                                                  else ""))
        p.add_argument("--size", type=int, default=64, help="frame side in pixels (even)")
        p.add_argument("--seed", type=int, default=0)
    return add


def _video_synth(name: str):
    def synth(args) -> int:
        from . import synth_video

        writer = {"kinetics": synth_video.write_synthetic_kinetics, "ssv2": synth_video.write_synthetic_ssv2,
                  "ssv1": synth_video.write_synthetic_ssv1}[name]
        try:
            manifest = writer(args.out, classes=args.classes, train_per_class=args.train_per_class,
                              val_per_class=args.val_per_class, frames=args.frames, size=args.size, seed=args.seed)
        except (ValueError, FileExistsError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{args.out}: {name} synthetic, {args.classes} classes, {len(manifest['files'])} files, "
              f"sha256 {manifest['sha256']}")
        return 0
    return synth


def _video_check_arguments(p: argparse.ArgumentParser) -> None:
    _root_and_workers(p)
    # extend + nargs: both `--list A B` (as the README writes it) and `--list A --list B` (as the stage does)
    p.add_argument("--list", action="extend", nargs="+", metavar="FILE",
                   help="split list(s) to check: several after one --list, or --list repeated; default: the "
                        "standard list names found in --root")
    p.add_argument("--class-index", nargs="+", metavar="FILE",
                   help="class-index file(s) (e.g. the official kinetics_400_categroies.txt, or the two "
                        "Kinetics-600 lists); checks class names and the label range")
    p.add_argument("--labels", metavar="JSON", help="SSV2 labels JSON (default: next to the split JSON)")
    p.add_argument("--frame-template", default=None, help="frame file names in a frame folder (img_{:05d}.jpg)")


def _video_check(name: str):
    def check(args):
        from .check_video import check_video_dataset
        from .video import FRAME_TEMPLATE

        return check_video_dataset(name, args.root, args.list, args.class_index, args.labels,
                                   args.frame_template or FRAME_TEMPLATE, args.workers)
    return check


@dataclass(frozen=True)
class DatasetActions:
    synth_arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None
    synth: Optional[Callable[[argparse.Namespace], int]] = None
    check: Optional[Callable[[argparse.Namespace], object]] = None  # returns a report: .problems, .ok, .summary()
    check_arguments: Callable[[argparse.ArgumentParser], None] = _root_and_workers


DATASETS = {
    "imagenet": DatasetActions(_imagenet_synth_arguments, _imagenet_synth, _imagenet_check),
    "kinetics": DatasetActions(_video_synth_arguments("kinetics"), _video_synth("kinetics")),
    "kinetics400": DatasetActions(check=_video_check("kinetics400"), check_arguments=_video_check_arguments),
    "kinetics600": DatasetActions(check=_video_check("kinetics600"), check_arguments=_video_check_arguments),
    "ssv1": DatasetActions(_video_synth_arguments("ssv1"), _video_synth("ssv1"), _video_check("ssv1"),
                           _video_check_arguments),
    "ssv2": DatasetActions(_video_synth_arguments("ssv2"), _video_synth("ssv2"), _video_check("ssv2"),
                           _video_check_arguments),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    synth = actions.add_parser("synth", help="write a small synthetic data set in the real on-disk layout")
    check = actions.add_parser("check", help="validate a data set: layout, classes, every image decodes")
    synth_sets = synth.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    check_sets = check.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, ds in DATASETS.items():
        if ds.synth is not None:
            ds.synth_arguments(synth_sets.add_parser(name, help=f"synthetic {name}"))
        if ds.check is not None:
            ds.check_arguments(check_sets.add_parser(name, help=f"check {name}"))


def run(args) -> int:
    ds = DATASETS[args.dataset]
    if args.action == "synth":
        return ds.synth(args)
    report = ds.check(args)
    for problem in report.problems:
        print(problem)
    print(report.summary())
    return 0 if report.ok else 1
