"""``uniformer stage <step> <table>``: one pipeline step for every unit the active settings list (what dvc.yaml calls).

DVC runs one stage per table and step; Snakemake runs one job per unit. Both run the command lines of
``uniformer.workflow.commands`` (``--dry-run`` prints them), so the two engines never disagree. Each command runs
in its own process, as under Snakemake (multi-GPU training is launched with torchrun).
"""
import argparse
import subprocess
import sys
from pathlib import Path

from ..config import active_profile, add_settings_argument, load_params
from ..io import write_text
from ..tables.spec import TABLES
from ..workflow import STEPS, check_file, commands, shell


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("step", choices=STEPS)
    p.add_argument("table", choices=sorted(TABLES))
    add_settings_argument(p)
    p.add_argument("--dry-run", action="store_true", help="print the command lines, run nothing")


def program(name: str) -> str:
    """``uniformer`` / ``torchrun`` next to this Python (a venv need not be active), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def run(args) -> int:
    params = load_params()
    settings = active_profile(params, args.profile)
    for unit, cmds in commands(args.step, args.table, settings, params).items():
        for argv in cmds:
            print(shell(argv, argv[0]), file=sys.stdout if args.dry_run else sys.stderr, flush=True)
            if args.dry_run:
                continue
            is_check = argv[1:3] == ["data", "check"]
            r = subprocess.run([program(argv[0]), *argv[1:]], stdout=subprocess.PIPE if is_check else None, text=True)
            if is_check:
                sys.stdout.write(r.stdout)
            if r.returncode:
                return r.returncode
            if is_check:  # only a passing check is written: training depends on it
                write_text(check_file(unit, settings), r.stdout)
    if args.step == "train" and not args.dry_run:
        (Path("results") / "train" / args.table).mkdir(parents=True, exist_ok=True)  # DVC's out, even with nothing to train
    return 0
