"""``uniformer stage data|train|eval <table>``: one pipeline stage for every item the active profile lists.

DVC runs these (one command per stage, re-run as a whole when its params change); Snakemake runs the
same ``uniformer data|train|eval`` commands one item per job. Both write the same paths
(``uniformer/tables/spec.py``), so the two engines never disagree.
"""
import argparse
import sys
from pathlib import Path

from ..config import active_profile, load_params, section

STEPS = ("data", "train", "eval")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..tables.spec import TABLES

    p.add_argument("step", choices=STEPS)
    p.add_argument("table", choices=sorted(TABLES))
    p.add_argument("--profile", help="smoke | paper (default: params.yaml profile_name)")
    p.add_argument("--check-dir", help="data: write each data set's check report to "
                                       "<DIR>/<dataset>/<profile>.check.txt (what the train stage depends on)")


def data_commands(dataset: str, data: dict) -> list:
    """Write the synthetic set (if the profile has one), then check the data set."""
    root = data["root"]
    cmds = []
    s = dict(data.get("synth") or {})
    if s:
        kind = s.pop("dataset", dataset)
        cmds.append(["data", "synth", kind, "--out", root] + [
            a for k, v in s.items() for a in (f"--{k.replace('_', '-')}", v)])
    check = ["data", "check", dataset, "--root", root]
    if dataset != "imagenet":
        under = lambda p: str(p if Path(p).is_absolute() else Path(root) / p)  # noqa: E731
        for key in ("train_list", "val_list"):
            check += ["--list", under(data[key])]
        ci = data.get("class_index")
        if ci:
            check += ["--class-index"] + [under(p) for p in ([ci] if isinstance(ci, str) else ci)]
        if data.get("labels"):
            check += ["--labels", under(data["labels"])]
        if data.get("frame_template"):
            check += ["--frame-template", data["frame_template"]]
    return cmds + [check]


def plan(step: str, table: str, profile: str, params=None):
    """The ``uniformer`` argument lists this stage runs, in order."""
    from ..tables.spec import evaluated_items, get_table, trained_items

    params = params or load_params()
    spec = get_table(table)
    tables = section(params, "tables", profile, table)
    if step == "data":
        return [c for ds in spec.datasets for c in data_commands(ds, section(params, "data", profile, ds))]
    if step == "train":
        return [["train", ds, "--model", m, "--profile", profile,
                 "--data-root", section(params, "data", profile, ds)["root"], "--resume",
                 "--out", spec.train_dir(m, profile), "--no-progress"] for m, ds in trained_items(spec, tables).items()]
    return [["eval", ds, "--model", model, "--checkpoint", ckpt, "--profile", profile,
             "--data-root", section(params, "data", profile, ds)["root"], "--out", spec.eval_dir(entry, profile),
             "--no-progress"] for entry, (model, ckpt, ds) in evaluated_items(spec, tables, profile).items()]


def run(args) -> int:
    import contextlib
    import io

    from ..cli import main
    from ..io import write_text

    profile = active_profile(load_params(), args.profile)
    for argv in plan(args.step, args.table, profile):
        argv = [str(a) for a in argv]
        print("uniformer " + " ".join(argv), file=sys.stderr, flush=True)
        report = args.check_dir and argv[:2] == ["data", "check"]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf) if report else contextlib.nullcontext():
            rc = main(argv)
        if report:
            sys.stdout.write(buf.getvalue())
        if rc:
            return rc
        if report:  # only a passing check is written: the train stage depends on it
            write_text(Path(args.check_dir) / argv[2] / f"{profile}.check.txt", buf.getvalue())
    return 0
