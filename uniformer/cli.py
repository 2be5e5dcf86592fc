"""The ``uniformer`` command. Thin: parses arguments and hands over to one module per subcommand.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``; imports are lazy so
``uniformer --help`` stays fast.
"""
import argparse
import importlib
import sys

from .config import ConfigError
from .models.checkpoint import CheckpointError

# subcommand -> (module, help)
COMMANDS = {
    "models": ("uniformer.commands.models", "list every registered variant with params / GFLOPs / resolution"),
    "profile": ("uniformer.profiling.command", "params, FLOPs, latency, throughput and memory of the variants"),
    "data": ("uniformer.commands.data", "write synthetic datasets / check real ones"),
    "train": ("uniformer.engine.train", "train a model on a table's dataset (smoke or paper profile)"),
    "eval": ("uniformer.engine.evaluate", "evaluate our or an official checkpoint"),
    "stage": ("uniformer.commands.stage", "run one pipeline stage for every item of a table (what dvc.yaml calls)"),
    "checkpoint": ("uniformer.commands.checkpoint", "convert an official dense checkpoint (mmdet / mmseg / mmpose) "
                                                    "to ours and load it strictly"),
    "workflow": ("uniformer.commands.workflow", "print the dvc.yaml generated from the table registry"),
    "report": ("uniformer.commands.report", "regenerate a paper table (md, csv, tex, figure) from the results"),
    "check": ("uniformer.commands.check", "regression gate: latest smoke results vs a committed baseline"),
    "tables": ("uniformer.commands.tables", "list the registered paper tables (and with --datasets their data sets)"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="uniformer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else argv
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    modules = {}
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if wanted is None or name == wanted:
            try:
                modules[name] = importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
                continue
            modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    if args.command not in modules:
        parser.error(f"'{args.command}' is not available in this version")
    try:
        return int(modules[args.command].run(args) or 0)
    except (CheckpointError, ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
