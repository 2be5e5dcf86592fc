"""``uniformer workflow dvc``: print the dvc.yaml generated from the table registry (the committed file must equal it)."""
import argparse
import sys
from pathlib import Path

from ..workflow import dvc_yaml


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["dvc"], help="dvc: the DVC stages of every table")
    p.add_argument("--check", metavar="FILE", help="exit 1 (and say how to fix it) if FILE differs from the output")


def run(args) -> int:
    text = dvc_yaml()
    if args.check:
        if Path(args.check).read_text() != text:
            print(f"{args.check} is not what `uniformer workflow dvc` generates; regenerate it with "
                  f"`uniformer workflow dvc > {args.check}`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0
