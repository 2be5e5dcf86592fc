# common.smk — shared helpers for all rules (included first by the Snakefile).

import csv
import math
import sys
from pathlib import Path

REPO = Path(workflow.basedir)
REPORTS = "reports"
LOGS = "logs"

# Active profile (params.yaml: profile_name; override with --config profile_name=paper).
PROFILE_NAME = config["profile_name"]
if PROFILE_NAME not in config["profile"]:
    raise ValueError(
        f"profile_name={PROFILE_NAME!r} not in params.yaml 'profile' section "
        f"(known: {sorted(config['profile'])})"
    )
PROFILE = config["profile"][PROFILE_NAME]

# The `uniformer` console script next to the Python running Snakemake (so
# `.venv/bin/snakemake` works without activating the venv); else rely on PATH.
# Kept relative to the repo when possible so that moving the checkout does not
# change the rule's params (which would trigger a re-run).
_bin = Path(sys.executable).parent / "uniformer"
if not _bin.exists():
    UNIFORMER = "uniformer"
elif _bin.absolute().is_relative_to(REPO.absolute()):
    UNIFORMER = str(_bin.absolute().relative_to(REPO.absolute()))
else:
    UNIFORMER = str(_bin)


def n_reference_models(task):
    """Distinct (model, resolution) rows of `task` in the packaged paper tables."""
    path = REPO / "uniformer" / "reference" / "paper_results.csv"
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["task"] == task and r["primary"] == "yes"]
    return len({(r["model"], r["resolution"]) for r in rows})


def profile_threads():
    """params.yaml profile.threads; 0 = all cores given to Snakemake (--cores)."""
    return int(PROFILE["threads"]) or (workflow.cores or 1)


def profile_runtime_min(task):
    """Upper bound (minutes) for a profiling job: models x precisions x budget, +10 min slack."""
    seconds = n_reference_models(task) * len(PROFILE["precisions"]) * PROFILE["max_seconds_per_model"]
    return math.ceil(seconds / 60) + 10
