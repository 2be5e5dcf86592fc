"""MLflow tracking: the one place that knows the tracking URI, experiment names, run names and tags.

Default store: ``sqlite:///<project root>/mlflow.db`` (current MLflow refuses plain file stores);
``MLFLOW_TRACKING_URI`` overrides it (e.g. a shared server). One experiment per table
(``imagenet``), run names ``<stage>/<model>/<profile>``.
"""
import fcntl
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import timm
import torch

from .config import PROJECT_ROOT, config_hash


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


def _git(*args: str) -> Optional[str]:
    try:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except Exception:
        return None


def environment_tags() -> Dict[str, str]:
    """git commit / dirty flag, library versions and hardware, attached to every run."""
    tags = {
        "git_commit": _git("rev-parse", "HEAD") or "unknown",
        "git_dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower(),
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "python_version": platform.python_version(),
        "hostname": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "num_threads": str(torch.get_num_threads()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    return tags


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


@contextmanager
def _store_init_lock(uri: str) -> Iterator[None]:
    """Serialise the first touch of a sqlite store across processes.

    MLflow creates / migrates the schema of a new sqlite store on first use; two processes doing it at
    once fail ("duplicate column name"), losing a run. An exclusive ``flock`` on a lock file (in the temp
    folder, keyed by the database path) makes the second wait for the first. Other stores: no-op.
    """
    if not uri.startswith("sqlite:///") or os.name != "posix":
        yield
        return

    db = os.path.abspath(uri[len("sqlite:///"):])
    lock = Path(tempfile.gettempdir()) / f"uniformer-mlflow-{hashlib.sha256(db.encode()).hexdigest()[:16]}.lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Run:
    """Thin wrapper over an active MLflow run; metric names are sanitised, failures to log never kill training."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def log_metrics(self, metrics: Dict[str, Any], step: Optional[int] = None) -> None:
        from mlflow.entities import Metric  # lazy: MLflow is heavy and only needed when a run is logged

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step or 0) for k, v in _flatten(metrics).items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if batch:
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception as e:  # a busy or unreachable store must not kill a training run
                logging.getLogger(__name__).warning("MLflow: could not log metrics (%s)", e)

    def log_artifact(self, path: os.PathLike) -> None:
        if Path(path).is_file():
            self.client.log_artifact(self.run_id, str(path))

    def set_tags(self, tags: Dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))


@contextmanager
def start_run(table: str, stage: str, model: str, profile: str, params: Dict[str, Any],
              tags: Optional[Dict[str, Any]] = None, enabled: bool = True) -> Iterator[Optional[Run]]:
    """Open an MLflow run ``<stage>/<model>/<profile>`` in experiment ``table``; yields a ``Run`` (or None if disabled).

    Params are the resolved config (flattened; MLflow keeps values as strings), tags carry table / stage /
    model / profile / params hash plus ``environment_tags()`` and any extra ``tags`` (e.g. dataset manifest hash).
    The run ends FINISHED, or FAILED if the body raises.
    """
    if not enabled or os.environ.get("UNIFORMER_NO_MLFLOW") == "1":
        yield None
        return
    from mlflow.entities import Param, RunTag  # lazy: MLflow is heavy and only needed when a run is logged
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    with _store_init_lock(uri):  # schema creation and experiment creation, one process at a time
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(table)
        if exp is None:
            try:
                exp_id = client.create_experiment(table)
            except Exception:  # created concurrently by another process
                exp_id = client.get_experiment_by_name(table).experiment_id
        else:
            exp_id = exp.experiment_id
        # MLflow 3 opens an experiment without this tag on its GenAI overview ("Traces"); ours are model runs
        client.set_experiment_tag(exp_id, "mlflow.experimentKind", "custom_model_development")
    all_tags = {"table": table, "stage": stage, "model": model, "settings": profile,
                "params_hash": config_hash(params), "mlflow.runName": f"{stage}/{model}/{profile}",
                **environment_tags(), **(tags or {})}
    run = client.create_run(exp_id, run_name=f"{stage}/{model}/{profile}")
    run_id = run.info.run_id
    flat = {k: str(v)[:6000] for k, v in _flatten(params).items()}
    items = list(flat.items())
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[i:i + 100]])
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in all_tags.items()])
    if tags and tags.get("dataset"):  # the UI's Dataset column: name, content hash and where it lies
        from mlflow.entities import Dataset, DatasetInput, InputTag  # lazy: MLflow only when a run is logged

        digest = str(tags.get("dataset_manifest") or "unknown")[:36]
        client.log_inputs(run_id, datasets=[DatasetInput(
            Dataset(name=str(tags["dataset"]), digest=digest, source_type="local",
                    source=str(tags.get("data_root") or tags.get("data_source") or "")),
            tags=[InputTag("mlflow.data.context", "train" if stage == "train" else "eval")])])
    status = "FAILED"
    try:
        yield Run(client, run_id)
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
