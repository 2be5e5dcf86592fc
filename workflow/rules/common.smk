# common.smk — configuration shared by every rule (included first by the Snakefile).
#
# Paths follow uniformer/tables/spec.py, so Snakemake, DVC and `uniformer report` read and write the
# same files:
#   results/data/<dataset>/<profile>.check.txt
#   results/profile/<table>/<profile>.json
#   results/train/<table>/<item>/<profile>/{metrics.json,last.pth}
#   results/eval/<table>/<entry>/<profile>/metrics.json
#   reports/<table>.{md,csv,tex}, reports/<table>_acc_vs_gflops.png
# Tables: imagenet (data set imagenet), kinetics (kinetics400, kinetics600), something (ssv1, ssv2).
# What each table trains / evaluates comes from uniformer.tables.spec (the same code `uniformer stage` uses).

import sys
from pathlib import Path

from uniformer.commands.stage import data_commands
from uniformer.tables.spec import TABLES, evaluated_items, get_table, trained_items

REPO = Path(workflow.basedir)
LOGS = Path("logs")
TABLE_NAMES = sorted(TABLES)

# Active profile (params.yaml: profile_name; override with --config profile_name=paper).
PROFILE_NAME = config["profile_name"]
if PROFILE_NAME not in config["profile"]:
    raise ValueError(f"profile_name={PROFILE_NAME!r} is not defined in params.yaml 'profile'")
for _t in TABLE_NAMES:
    if PROFILE_NAME not in config["tables"].get(_t, {}):
        raise ValueError(f"profile_name={PROFILE_NAME!r} is not defined in params.yaml 'tables.{_t}'")

# The `uniformer` console script next to the Python running Snakemake (so `.venv/bin/snakemake` works
# without activating the venv); relative to the repo so that moving the checkout re-runs nothing.
_bin = Path(sys.executable).parent / "uniformer"
if not _bin.exists():
    UNIFORMER = "uniformer"
elif _bin.absolute().is_relative_to(REPO.absolute()):
    UNIFORMER = str(_bin.absolute().relative_to(REPO.absolute()))
else:
    UNIFORMER = str(_bin)

wildcard_constraints:
    table="|".join(TABLE_NAMES),
    dataset="|".join(d for t in TABLE_NAMES for d in get_table(t).datasets),


def table_cfg(table):
    return config["tables"][table][PROFILE_NAME]


def data_cfg(dataset):
    return config["data"][dataset][PROFILE_NAME]


def train_cfg(dataset):
    return config["train"][dataset][PROFILE_NAME]


def trained(table):
    """{item: data set} the active profile trains (mode `train`)."""
    return trained_items(get_table(table), table_cfg(table))


def evaluated(table):
    """{entry: (model, checkpoint path, data set)} the active profile evaluates."""
    return evaluated_items(get_table(table), table_cfg(table), PROFILE_NAME)


def check_file(dataset):
    return f"results/data/{dataset}/{PROFILE_NAME}.check.txt"


def cli_args(argv):
    """A `uniformer` argument list as one shell-quoted string."""
    import shlex

    return " ".join(shlex.quote(str(a)) for a in argv)


def threads_all():
    return workflow.cores or 1


def launcher(gpus):
    """How a training job starts: the CLI itself on CPU, one torchrun process per GPU otherwise."""
    if not gpus:
        return UNIFORMER
    return f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node {gpus} -m uniformer.cli"
