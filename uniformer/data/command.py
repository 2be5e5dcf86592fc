"""``uniformer data``: write a synthetic data set, or check a real one.

    uniformer data synth imagenet --out DIR --classes N --train-per-class K --val-per-class V --size S --seed X
    uniformer data check imagenet --root DIR [--workers W]

Each data set registers, in ``DATASETS``, a function adding its ``synth`` options and the two actions;
video sets (kinetics400, ssv2) plug in the same way. Heavy imports happen inside the actions.
"""
import argparse
import sys
from dataclasses import dataclass
from typing import Callable


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


@dataclass(frozen=True)
class DatasetActions:
    synth_arguments: Callable[[argparse.ArgumentParser], None]
    synth: Callable[[argparse.Namespace], int]
    check: Callable[[argparse.Namespace], object]  # returns a report with .problems, .ok and .summary()


DATASETS = {
    "imagenet": DatasetActions(_imagenet_synth_arguments, _imagenet_synth, _imagenet_check),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    synth = actions.add_parser("synth", help="write a small synthetic data set in the real on-disk layout")
    check = actions.add_parser("check", help="validate a data set: layout, classes, every image decodes")
    synth_sets = synth.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    check_sets = check.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, ds in DATASETS.items():
        ds.synth_arguments(synth_sets.add_parser(name, help=f"synthetic {name}"))
        p = check_sets.add_parser(name, help=f"check {name}")
        p.add_argument("--root", required=True, help="data set root folder")
        p.add_argument("--workers", type=int, default=0, help="decode images in this many processes")


def run(args) -> int:
    ds = DATASETS[args.dataset]
    if args.action == "synth":
        return ds.synth(args)
    report = ds.check(args)
    for problem in report.problems:
        print(problem)
    print(report.summary())
    return 0 if report.ok else 1
