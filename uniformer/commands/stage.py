"""``uniformer stage data|train|eval <table>``: one pipeline stage for every item the active profile lists.

DVC runs these (one command per stage, re-run as a whole when its params change); Snakemake runs the
same ``uniformer data|train|eval`` commands one item per job. Both write the same paths
(``uniformer/tables/spec.py``), so the two engines never disagree.
"""
import argparse
import sys

from ..config import active_profile, load_params, section

STEPS = ("data", "train", "eval")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("step", choices=STEPS)
    p.add_argument("table", choices=["imagenet"])
    p.add_argument("--profile", help="smoke | paper (default: params.yaml profile_name)")


def plan(step: str, table: str, profile: str, params=None):
    """The ``uniformer`` argument lists this stage runs, in order."""
    from ..tables.spec import get_table

    params = params or load_params()
    spec = get_table(table)
    data = section(params, "data", profile, table)
    tables = section(params, "tables", profile, table)
    root = data["root"]
    if step == "data":
        cmds = []
        if "synth" in data:
            s = data["synth"]
            cmds.append(["data", "synth", table, "--out", root, "--classes", s["classes"], "--train-per-class",
                         s["train_per_class"], "--val-per-class", s["val_per_class"], "--size", s["size"],
                         "--seed", s["seed"]])
        return cmds + [["data", "check", table, "--root", root]]
    if step == "train":
        if tables["mode"] != "train":
            return []
        return [["train", table, "--model", m, "--profile", profile, "--data-root", root, "--resume",
                 "--out", spec.train_dir(m, profile), "--no-progress"] for m in tables["train"]]
    items = ({spec.entry(m).name: (m, spec.train_dir(m, profile) / "last.pth") for m in tables["train"]}
             if tables["mode"] == "train" else
             {e: (e.split(".")[0], path) for e, path in tables["checkpoints"].items()})
    return [["eval", table, "--model", model, "--checkpoint", ckpt, "--profile", profile, "--data-root", root,
             "--out", spec.eval_dir(entry, profile), "--no-progress"] for entry, (model, ckpt) in items.items()]


def run(args) -> int:
    from ..cli import main

    profile = active_profile(load_params(), args.profile)
    for argv in plan(args.step, args.table, profile):
        argv = [str(a) for a in argv]
        print("uniformer " + " ".join(argv), file=sys.stderr, flush=True)
        rc = main(argv)
        if rc:
            return rc
    return 0
