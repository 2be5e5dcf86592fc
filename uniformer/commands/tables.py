"""``uniformer tables``: the registered paper tables (what ``make gate`` loops over), one per line."""
import argparse

from ..tasks import get_dataset, tables


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datasets", action="store_true", help="also name each table's data sets and task")


def run(args) -> int:
    for name, t in tables().items():
        if args.datasets:
            print(f"{name}: {t.task.name}: " + ", ".join(f"{d} ({get_dataset(d).title})" for d in t.datasets))
        else:
            print(name)
    return 0
