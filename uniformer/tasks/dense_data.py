"""What the dense formats' adapters share: ``DenseData`` (root, config, writing the synthetic set) and their
``uniformer data synth|check`` actions (``synth_action``, ``check_action``).

COCO instances, ADE20K and COCO keypoints are read, written and checked by ``uniformer.data``; each registers
its tools with its task (``tasks.detection``, ``tasks.segmentation``, ``tasks.pose``).
"""
import argparse
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict

from .base import DataAction


class DenseData:
    """Base of a dense format's adapter, built as ``adapter(dataset, root, data.<dataset>.<profile>)``.

    A subclass names the folder a copy of the data set has (``marker``) and the writer of its synthetic set
    (``writer(root, **synth)``); ``ensure`` writes that set when the root has neither it nor our manifest.
    """
    marker = "annotations"
    writer: Callable[..., Dict[str, Any]]

    def __init__(self, dataset: str, root: os.PathLike, data_cfg: Dict[str, Any]):
        self.dataset, self.root, self.cfg = dataset, Path(root), data_cfg

    def ensure(self) -> None:
        synth = self.cfg.get("synth")
        if (self.root / self.marker).is_dir() or (self.root / "manifest.json").is_file() or not synth:
            return
        print(f"{self.root}: no data set; writing the synthetic one ({synth})", file=sys.stderr)
        self.writer(self.root, **{k: int(v) for k, v in synth.items()})


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

