"""``uniformer checkpoint convert SRC --config NAME --out DST``: an official dense checkpoint -> our layout.

SRC is read with ``torch.load(weights_only=True)`` (official files hold ``state_dict`` + ``meta``), converted by
``uniformer.models.convert`` for ``--config``, loaded strictly into our model, and saved atomically to DST as
``{"state_dict": ..., "meta": {...}}`` only if nothing is missing, unexpected or mis-shaped.
"""
import argparse
from typing import Dict

import torch

from ..io import atomic_path
from ..models.checkpoint import extract_state_dict, read_checkpoint
from ..models.convert import build_for, convert_checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("convert", help="convert an official detection / segmentation / pose checkpoint")
    c.add_argument("src", help="official checkpoint (.pth)")
    c.add_argument("--config", required=True, help="official config name, e.g. mask_rcnn_1x_hybrid_small")
    c.add_argument("--out", required=True, help="where to write the converted checkpoint")


def key_report(model, state_dict) -> Dict[str, list]:
    """Missing / unexpected / mis-shaped keys of ``state_dict`` against ``model``."""
    own = model.state_dict()
    return {"missing": [k for k in own if k not in state_dict],
            "unexpected": [k for k in state_dict if k not in own],
            "mis-shaped": [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]}


def convert_file(src: str, config: str, out: str) -> Dict[str, list]:
    """Convert ``src`` for ``config``; write ``out`` only if it loads strictly. Returns the key report."""
    state_dict = convert_checkpoint(extract_state_dict(read_checkpoint(src)), config)
    model = build_for(config)
    report = key_report(model, state_dict)
    if not any(report.values()):
        model.load_state_dict(state_dict, strict=True)
        with atomic_path(out) as tmp:
            torch.save({"state_dict": state_dict, "meta": {"config": config, "converted_from": str(src)}}, tmp)
    return report


def run(args) -> int:
    report = convert_file(args.src, args.config, args.out)
    for name, keys in report.items():
        print(f"{name} keys: {len(keys)}" + (f" (e.g. {', '.join(keys[:5])})" if keys else ""))
    if any(report.values()):
        print(f"not written: the converted checkpoint does not fit {args.config}")
        return 1
    print(f"wrote {args.out}")
    return 0
