# common.smk — configuration shared by every rule (included first by the Snakefile).
#
# Paths follow uniformer/tables/spec.py, so Snakemake, DVC and `uniformer report` read and write the
# same files:
#   results/profile/<table>/<profile>.json
#   results/train/<table>/<model>/<profile>/{metrics.json,last.pth}
#   results/eval/<table>/<entry>/<profile>/metrics.json
#   reports/<table>.{md,csv,tex}, reports/<table>_acc_vs_gflops.png

import sys
from pathlib import Path

REPO = Path(workflow.basedir)
LOGS = Path("logs")

# Active profile (params.yaml: profile_name; override with --config profile_name=paper).
PROFILE_NAME = config["profile_name"]
for _section in ("profile", "tables"):
    if PROFILE_NAME not in config[_section] and PROFILE_NAME not in config[_section].get("imagenet", {}):
        raise ValueError(f"profile_name={PROFILE_NAME!r} is not defined in params.yaml '{_section}'")

# The `uniformer` console script next to the Python running Snakemake (so `.venv/bin/snakemake` works
# without activating the venv); relative to the repo so that moving the checkout re-runs nothing.
_bin = Path(sys.executable).parent / "uniformer"
if not _bin.exists():
    UNIFORMER = "uniformer"
elif _bin.absolute().is_relative_to(REPO.absolute()):
    UNIFORMER = str(_bin.absolute().relative_to(REPO.absolute()))
else:
    UNIFORMER = str(_bin)


def table_cfg(table):
    return config["tables"][table][PROFILE_NAME]


def data_cfg(table):
    return config["data"][table][PROFILE_NAME]


def train_cfg(table):
    return config["train"][table][PROFILE_NAME]


def entry_of(table, model):
    """The published entry a trained model is evaluated as (its first one, e.g. uniformer_xxs.in1k_224)."""
    from uniformer.tables.spec import get_table

    return get_table(table).entry(model).name


def evaluated(table):
    """{entry: (model, checkpoint path)} the active profile evaluates."""
    cfg = table_cfg(table)
    if cfg["mode"] == "train":
        return {entry_of(table, m): (m, f"results/train/{table}/{m}/{PROFILE_NAME}/last.pth") for m in cfg["train"]}
    if cfg["mode"] == "checkpoints":
        return {e: (e.split(".")[0], path) for e, path in cfg["checkpoints"].items()}
    raise ValueError(f"tables.{table}.{PROFILE_NAME}.mode must be train or checkpoints, not {cfg['mode']!r}")


def threads_all():
    return workflow.cores or 1


def launcher(gpus):
    """How a training job starts: the CLI itself on CPU, one torchrun process per GPU otherwise."""
    if not gpus:
        return UNIFORMER
    return f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node {gpus} -m uniformer.cli"
