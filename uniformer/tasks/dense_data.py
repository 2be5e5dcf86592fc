"""The dense formats' data tools: ``uniformer data synth|check coco|ade20k|coco_pose``.

COCO instances (detection + instance segmentation), ADE20K and COCO keypoints are read, written and checked by
``uniformer.data``; their tasks and tables (training, evaluation, reports) are registered next to them once they
exist. Until then only the data tools are, so a user can validate a real copy and write the synthetic twin.
"""
import argparse
import inspect
import sys
from typing import Callable

from ..data.check_coco import check_coco
from ..data.synth_coco import write_synthetic_coco
from .base import DataAction, register_data_tools


def synth_action(name: str, writer: Callable) -> DataAction:
    """``--out DIR`` plus one option per keyword argument of ``writer`` (its defaults and types)."""
    keywords = [p for p in inspect.signature(writer).parameters.values() if p.default is not p.empty]

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, help="folder to write (refused if it holds someone else's files)")
        for k in keywords:
            p.add_argument(f"--{k.name.replace('_', '-')}", type=type(k.default), default=k.default,
                           help=f"default {k.default}")

    def run(args) -> int:
        manifest = writer(args.out, **{k.name: getattr(args, k.name) for k in keywords})
        print(f"{args.out}: synthetic {name} written (sha256 {manifest.get('sha256', '?')})", file=sys.stderr)
        return 0
    return DataAction(name, add, run)


def check_action(name: str, checker: Callable) -> DataAction:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root", required=True, help="data set root folder")
    return DataAction(name, add, lambda args: checker(args.root))


# ade20k and coco_pose: registered with their tasks (``tasks.segmentation``, ``tasks.pose``)
for _name, _check, _synth in (("coco", check_coco, write_synthetic_coco),):
    register_data_tools(_name, check_action(_name, _check), synth_action(_name, _synth))
