"""What the workflow runs, from one source: the table registry and the resolved parameters.

Snakemake (``workflow/rules/*.smk``) runs one job per unit with the command lines of :func:`commands`;
``uniformer stage <step> <table>`` (what ``dvc.yaml`` calls) runs the same command lines one after another;
``uniformer workflow dvc`` writes ``dvc.yaml`` from the same tables and parameter sections. So the two engines
run the same commands on the same paths and can never disagree.

A unit is what one Snakemake job does: a data set (``data``: write the synthetic set if the settings have one,
then check it), a trained item (``train``), an evaluated entry (``eval``), the whole table (``profile``,
``report``). Command lines start with the program (``uniformer``, or ``torchrun`` for multi-GPU training).
"""
import shlex
from pathlib import Path
from typing import Any, Dict, List

import yaml

from .config import TRAINING_CODE, section
from .tables.spec import RESULTS, TABLES, evaluated_items, get_table, trained_items
from .tasks import get_dataset

STEPS = ("data", "train", "eval", "profile", "report")
REPORTS = Path("reports")
GPU_STEPS = ("train", "eval", "profile")


def gpus(params: Dict[str, Any], table: str, settings: str, step: str) -> int:
    """GPUs one job of ``step`` uses (``tables.<table>.<settings>.gpus``; 0 = CPU). Training on several runs DDP."""
    return int((section(params, "tables", settings, table).get("gpus") or {}).get(step, 0))


def launcher(n_gpus: int) -> List[str]:
    """How a job starts: the CLI itself on CPU or one GPU, one torchrun process per GPU otherwise."""
    if n_gpus <= 1:
        return ["uniformer"]
    return ["torchrun", "--standalone", f"--nproc_per_node={n_gpus}", "-m", "uniformer.cli"]


def check_file(dataset: str, settings: str) -> Path:
    """The report of a passing ``uniformer data check`` (what training and evaluation depend on)."""
    return RESULTS / "data" / dataset / f"{settings}.check.txt"


def data_commands(dataset: str, data: Dict[str, Any]) -> List[List[str]]:
    """Write the synthetic set (if the settings have one), then check the data set."""
    root = data["root"]
    cmds = []
    s = dict(data.get("synth") or {})
    if s:
        kind = s.pop("dataset", dataset)
        cmds.append(["uniformer", "data", "synth", kind, "--out", root] + [
            str(a) for k, v in s.items() for a in (f"--{k.replace('_', '-')}", v)])
    check = ["uniformer", "data", "check", dataset, "--root", root] + get_dataset(dataset).check.config_args(data)
    return cmds + [check]


def commands(step: str, table: str, settings: str, params: Dict[str, Any]) -> Dict[str, List[List[str]]]:
    """``{unit: [command line, ...]}`` that ``step`` runs for ``table`` under ``settings`` (smoke | paper)."""
    spec = get_table(table)
    tables = section(params, "tables", settings, table)
    root = lambda ds: section(params, "data", settings, ds)["root"]  # noqa: E731
    if step == "data":
        return {ds: data_commands(ds, section(params, "data", settings, ds)) for ds in spec.datasets}
    if step == "train":
        launch = launcher(gpus(params, table, settings, "train"))
        return {m: [launch + ["train", ds, "--model", m, "--settings", settings, "--data-root", root(ds),
                              "--out", str(spec.train_dir(m, settings)), "--resume", "--no-progress"]]
                for m, ds in trained_items(spec, tables).items()}
    if step == "eval":
        return {entry: [["uniformer", "eval", ds, "--model", model, "--checkpoint", ckpt, "--settings", settings,
                         "--data-root", root(ds), "--out", str(spec.eval_dir(entry, settings)), "--no-progress"]]
                for entry, (model, ckpt, ds) in evaluated_items(spec, tables, settings).items()}
    if step == "profile":
        models = list(tables.get("profile_models") or [])
        return {table: [["uniformer", "profile", "--task", table, "--settings", settings, "--out-dir", str(REPORTS),
                         "--json", str(spec.profile_json(settings)), "--no-progress"]
                        + (["--models"] + models if models else [])]}
    if step == "report":
        return {table: [["uniformer", "report", table, "--settings", settings, "--out-dir", str(REPORTS)]]}
    raise ValueError(f"unknown step {step!r} (known: {', '.join(STEPS)})")


def eval_input(checkpoint: str) -> str:
    """What an evaluation waits for: our training run's metrics.json (written last, so a finished run; its
    ``last.pth`` is deliberately no declared output, so that a workflow re-running the job never deletes what
    a killed run resumes from), or the official checkpoint file itself."""
    ckpt = Path(checkpoint)
    ours = ckpt.parent.is_relative_to(RESULTS / "train") and ckpt.name == "last.pth"
    return str(ckpt.parent / "metrics.json") if ours else checkpoint


def shell(argv: List[str], program: str) -> str:
    """A command line as one shell string, its program replaced by ``program`` (e.g. the venv's copy)."""
    return " ".join(shlex.quote(a) for a in [program, *argv[1:]])


# --- dvc.yaml ----------------------------------------------------------------------------------------------
DVC_HEADER = """\
# dvc.yaml — GENERATED by `uniformer workflow dvc > dvc.yaml` from the table registry and params.yaml; do not
# edit (a test fails when this file and the generator differ). Each stage runs `uniformer stage <step> <table>`,
# which runs, one after another, exactly the command lines that Snakemake runs one job each
# (`uniformer stage <step> <table> --dry-run` prints them), on the same paths.
#
#   dvc repro                                   # every table, active settings (params.yaml settings; smoke)
#   dvc repro report_kinetics                   # one table
#   dvc exp run -S train.imagenet.smoke.epochs=5
#   dvc exp run -S settings=paper           # the published recipes on your real data / checkpoints
#   dvc metrics show                            # top-1 (and throughput) per entry and table
#
# Run with the venv active (`source .venv/bin/activate`) so that `uniformer` is on PATH. Training checkpoints
# (last.pth) persist between runs: a killed `dvc repro` resumes, a changed recipe or code starts afresh.
"""
_NO_CACHE = {"cache": False}


def dvc_stages() -> Dict[str, Any]:
    """The DVC stages of every registered table: data -> train -> eval, profile -> report."""
    stages: Dict[str, Any] = {}
    code = lambda *parts: [f"uniformer/{p}" for p in parts]  # noqa: E731
    for table in sorted(TABLES):
        spec = get_table(table)
        checks = [str(check_file(ds, "${settings}")) for ds in spec.datasets]
        train_dir, eval_dir = str(RESULTS / "train" / table), str(RESULTS / "eval" / table)
        profile_json = str(spec.profile_json("${settings}"))
        stem = str(REPORTS / table)
        stages[f"data_{table}"] = {
            "cmd": f"uniformer stage data {table}",
            "deps": code("data"),
            "params": ["settings"] + [f"data.{ds}" for ds in spec.datasets],
            "outs": [{c: _NO_CACHE} for c in checks]}
        stages[f"train_{table}"] = {
            "cmd": f"uniformer stage train {table}",
            "deps": checks + code(*TRAINING_CODE),
            "params": ["settings"] + [f"train.{ds}" for ds in spec.datasets] + [f"tables.{table}"],
            "outs": [{train_dir: {"cache": False, "persist": True}}]}  # persist: last.pth, what a killed run resumes
        stages[f"eval_{table}"] = {
            "cmd": f"uniformer stage eval {table}",
            "deps": [train_dir] + code(*TRAINING_CODE),
            "params": ["settings"] + [f"eval.{ds}" for ds in spec.datasets] + [f"tables.{table}"],
            "outs": [{eval_dir: _NO_CACHE}]}
        stages[f"profile_{table}"] = {
            "cmd": f"uniformer stage profile {table}",
            "deps": code("models", "profiling", "tasks") + ["uniformer/reference/paper_results.csv"],
            "params": ["settings", "profiling", f"tables.{table}"],
            "outs": [{profile_json: _NO_CACHE}, {f"{REPORTS}/models_{table}.md": _NO_CACHE},
                     {f"{REPORTS}/models_{table}.csv": _NO_CACHE}]}
        stages[f"report_{table}"] = {
            "cmd": f"uniformer stage report {table}",
            "deps": [profile_json, eval_dir] + code("tables", "tasks"),
            "params": ["settings", f"tables.{table}"],
            "outs": [{f"{stem}.md": _NO_CACHE}, {f"{stem}.tex": _NO_CACHE},
                     {f"{stem}_acc_vs_gflops.png": _NO_CACHE}],
            "metrics": [{f"{stem}_metrics.json": _NO_CACHE}],
            "plots": [{f"{stem}.csv": {"cache": False, "x": "gflops", "y": f"{spec.accuracy}_published",
                                       "template": "scatter"}}]}
    return stages


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated values out instead of as YAML anchors (&id001), so the file reads as written by hand."""

    def ignore_aliases(self, data):
        return True


def dvc_yaml() -> str:
    return DVC_HEADER + "\n" + yaml.dump({"stages": dvc_stages()}, Dumper=_PlainDumper, sort_keys=False, width=120)
