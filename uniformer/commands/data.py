"""``uniformer data``: write a synthetic data set, or check a real one.

    uniformer data synth imagenet --out DIR --classes N --train-per-class K --val-per-class V --size S --seed X
    uniformer data synth kinetics|ssv2|ssv1 --out DIR [--classes N --train-per-class K --val-per-class V
                                                      --frames F --size S --seed X]
    uniformer data check imagenet --root DIR [--workers W]
    uniformer data check kinetics400|kinetics600|ssv1|ssv2 --root DIR [--list FILE ...]
                         [--class-index FILE [FILE]] [--labels JSON] [--frame-template T] [--workers W]
    uniformer data synth coco|ade20k|coco_pose --out DIR [...];  uniformer data check coco|ade20k|coco_pose --root DIR

The subcommands are the registered data sets' checkers and synthetic writers (``uniformer.tasks``: each
``DatasetSpec`` names its ``check`` and ``synth`` actions; the synthetic ``kinetics`` set is checked as
``kinetics400``/``kinetics600``).
"""
import argparse

from ..tasks import checkers, synth_writers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    synth = actions.add_parser("synth", help="write a small synthetic data set in the real on-disk layout")
    check = actions.add_parser("check", help="validate a data set: layout, classes, every image decodes")
    synth_sets = synth.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    check_sets = check.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, writer in synth_writers().items():
        writer.add_arguments(synth_sets.add_parser(name, help=f"synthetic {name}"))
    for name, checker in checkers().items():
        checker.add_arguments(check_sets.add_parser(name, help=f"check {name}"))


def run(args) -> int:
    if args.action == "synth":
        return synth_writers()[args.dataset].run(args)
    report = checkers()[args.dataset].run(args)
    for problem in report.problems:
        print(problem)
    print(report.summary())
    return 0 if report.ok else 1
