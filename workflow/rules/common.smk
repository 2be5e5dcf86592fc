# common.smk — what every rule shares (included first by the Snakefile).
#
# The command lines come from uniformer.workflow.commands (what `uniformer stage`, and so dvc.yaml, runs too);
# the paths from uniformer.tables.spec:
#   results/data/<dataset>/<settings>.check.txt
#   results/profile/<table>/<settings>.json
#   results/train/<table>/<item>/<settings>/metrics.json   (+ last.pth: resumable, deliberately not an output)
#   results/eval/<table>/<entry>/<settings>/metrics.json
#   reports/<table>.{md,csv,tex}, reports/<table>_acc_vs_gflops.png

import os
import sys
from pathlib import Path

import yaml

from uniformer.config import TRAINING_CODE as _TRAINING_PARTS, config_hash
from uniformer.io import write_text
from uniformer.tables.spec import TABLES, get_table
from uniformer import workflow as W

REPO = Path(workflow.basedir)
LOGS = Path("logs")
TABLE_NAMES = sorted(TABLES)

# Active settings (params.yaml: settings; override with --config settings=paper).
SETTINGS = config["settings"]
if SETTINGS not in config["profiling"]:
    raise ValueError(f"settings={SETTINGS!r} is not defined in params.yaml 'profiling'")
for _t in TABLE_NAMES:
    if SETTINGS not in config["tables"].get(_t, {}):
        raise ValueError(f"settings={SETTINGS!r} is not defined in params.yaml 'tables.{_t}'")

# The commands read the configuration Snakemake merged (params.yaml + --configfile + --config), not params.yaml
# behind the workflow's back: it is written once per content and named to them by $UNIFORMER_PARAMS.
PARAMS_FILE = Path(".snakemake/uniformer") / f"params-{config_hash(config)}.yaml"
if not PARAMS_FILE.is_file():
    write_text(PARAMS_FILE, yaml.safe_dump(dict(config), sort_keys=False))
os.environ["UNIFORMER_PARAMS"] = str(PARAMS_FILE.absolute())



def clear_stale_lock(state=Path(".snakemake")):
    """Snakemake keeps its directory lock after a kill -9 and refuses to start until `--unlock`, so the same
    command could not resume. We record which process took the lock (host and pid); a lock whose owner on this
    host is gone is stale and is removed. A live run's lock is never touched (its owner is alive, or on another
    host for cluster jobs)."""
    import socket

    locks, owner = sorted((state / "locks").glob("*.lock")), state / "uniformer" / "lock-owner"
    here = socket.gethostname()
    if locks and owner.is_file():
        host, pid = owner.read_text().split()
        try:
            os.kill(int(pid), 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:  # someone else's live process
            alive = True
        if host == here and not alive:
            print(f"removing the stale Snakemake lock of process {pid} (killed?)", file=sys.stderr)
            for lock in locks:
                lock.unlink(missing_ok=True)
            locks = []
    if not locks:  # this run is about to take the lock
        write_text(owner, f"{here} {os.getpid()}\n")


clear_stale_lock()

wildcard_constraints:
    table="|".join(TABLE_NAMES),
    dataset="|".join(d for t in TABLE_NAMES for d in get_table(t).datasets),


def program(name):
    """`uniformer` / `torchrun` next to the Python running Snakemake (so `.venv/bin/snakemake` works without an
    active venv); relative to the repo, so that moving the checkout re-runs nothing."""
    exe = Path(sys.executable).parent / name
    if not exe.exists():
        return name
    return str(exe.absolute().relative_to(REPO.absolute())) if exe.absolute().is_relative_to(REPO.absolute()) \
        else str(exe)


def units(step, table):
    """{unit: [command line, ...]} of `step` for `table` (uniformer.workflow.commands)."""
    return W.commands(step, table, SETTINGS, config)


def shell_cmd(step, table, unit, index=-1):
    argv = units(step, table)[unit][index]
    return W.shell(argv, program(argv[0]))


def gpus(step, table):
    return W.gpus(config, table, SETTINGS, step)


def data_cfg(dataset):
    return config["data"][dataset][SETTINGS]


def table_of_dataset(dataset):
    return next(t for t in TABLE_NAMES if dataset in get_table(t).datasets)


def check_file(dataset):
    return str(W.check_file(dataset, SETTINGS))


def trained(table):
    """{item: [train command]} the active settings train (mode `train`)."""
    return units("train", table)


def evaluated(table):
    """{entry: [eval command]} the active settings evaluate."""
    return units("eval", table)


def dataset_of(step, table, unit):
    """The data set a train / eval unit reads: the argument after the subcommand."""
    argv = units(step, table)[unit][0]
    return argv[argv.index(step) + 1]


def arg_of(step, table, unit, flag):
    argv = units(step, table)[unit][0]
    return argv[argv.index(flag) + 1]


def code(*parts):
    """The package sources a rule's numbers depend on: a change re-runs the rule (as DVC's code deps do), so no
    result is left that this checkout's code would not have made (`uniformer check` refuses such a file)."""
    return sorted(str(p.relative_to(REPO)) for part in parts for p in (REPO / "uniformer" / part).rglob("*.py"))


TRAINING_CODE = code(*_TRAINING_PARTS)


def threads_all():
    return workflow.cores or 1
