"""The dense formats' data tools as ``uniformer data synth|check`` actions (``synth_action``, ``check_action``).

COCO instances, ADE20K and COCO keypoints are read, written and checked by ``uniformer.data``; each registers
its tools with its task (``tasks.detection``, ``tasks.segmentation``, ``tasks.pose``).
"""
import argparse
import inspect
import sys
from typing import Callable

from .base import DataAction


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

