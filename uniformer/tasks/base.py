"""The registry: tasks, their data sets and the paper tables, each named once.

Three kinds of record, registered by the task modules (``image_classification``, ``video_classification``;
plugins via ``$UNIFORMER_PLUGINS``) and read by the CLI, engine, profiler, report and gate:

- ``Task``         a kind of problem (image classification, video classification; later detection,
                   segmentation, pose): model factory, loss, metrics, evaluation files, recipe keys, table
                   columns, profile inputs. One object per task; behaviour lives in its methods, so nothing
                   else asks "is this video?".
- ``DatasetSpec``  a data set as ``uniformer train|eval|data check <name>`` and ``data.<name>`` of
                   params.yaml know it: its task, its paper table, its adapter (format reader), its checker,
                   its synthetic writer and its published entries.
- ``TableSpec``    a paper table: its data sets and where its result files live (Snakemake, DVC and
                   ``uniformer report`` use exactly these paths)::

    results/profile/<table>/<profile>.json              uniformer profile --task <table> --json ...
    results/train/<table>/<item>/<profile>/             uniformer train <dataset> (metrics.json, last.pth)
    results/eval/<table>/<entry>/<profile>/metrics.json uniformer eval <dataset>

This module only declares; the task modules hold the behaviour and import what it needs.
"""
import argparse
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

import torch
from timm.models import get_pretrained_cfg

from ..config import PROJECT_ROOT, ConfigError
from ..data.loader import stack
from ..profiling.report import gflops_cell, params_cell

RESULTS = Path("results")
PLUGINS_ENV = "UNIFORMER_PLUGINS"  # comma-separated modules imported after the built-in tasks

_TASKS: Dict[str, "Task"] = {}
_DATASETS: Dict[str, "DatasetSpec"] = {}
_TABLES: Dict[str, "TableSpec"] = {}
_SYNTH: Dict[str, "DataAction"] = {}
_CHECKS: Dict[str, "DataAction"] = {}  # checkers of data sets whose task is not registered yet (dense formats)


@dataclass(frozen=True)
class Column:
    """A column of a paper table; with ``compare``, three: published / measured / Δ (``tables.report``)."""
    header: str
    key: str = ""  # the row field shown (published: ``<key>_published``; Δ: ``<key>_delta[_pct]``)
    fmt: str = "{:.2f}"  # for float values
    compare: str = ""  # "pct": Δ in % of the published figure; "abs": Δ in points; "": a plain column
    measured: str = "meas."  # header of the measured column of a comparison
    align: str = "r"  # LaTeX column alignment
    cell: Optional[Callable[[Dict[str, Any]], str]] = None  # a cell computed from the whole row


def accuracy_columns(acc: str, label: str) -> List[Column]:
    """Published / measured / Δ of a paper accuracy metric (Δ in points)."""
    return [Column(label, acc, compare="abs")]


def speed_columns(rate: str) -> List[Column]:
    """fp32 throughput of the profile and its fraction of the GEMM rate measured in the same run."""
    return [Column(f"{rate} (fp32)", "img_per_s", "{:.3g}"), Column("of GEMM rate", "gemm_frac", "{:.0%}")]


class Task:
    """What the engine, profiler and report need of a kind of problem. Subclass it and override what
    differs; ``classification.ClassificationTask`` is the worked example (shared by image and video)."""

    name: str = ""
    # train.<dataset>.<profile> keys beyond the common recipe (``engine.recipe.COMMON_KEYS``)
    recipe_keys: Tuple[str, ...] = ()
    # eval metrics in metrics.json (val_<metric> in training); the first, higher = better, picks best.pth
    metrics: Tuple[str, ...] = ()
    optional_metrics: Tuple[str, ...] = ()  # summary keys only some protocols give (e.g. ADE20K's MS+flip)
    channels_last: str = "channels_last"  # torch memory format name for the model and its inputs

    def check_recipe(self, cfg: Dict[str, Any], where: str) -> None:
        """Reject task-specific recipe values that would fail late (called by ``resolve_train_config``)."""

    # --- model, loss, metrics (training and evaluation) ---
    def build_model(self, cfg: Dict[str, Any], num_classes: int):
        """The model a resolved recipe trains (its regularisation included)."""
        raise NotImplementedError

    def create_model(self, name: str, num_classes: int, model_kwargs: Dict[str, Any]):
        """The plain model ``name`` with ``num_classes`` outputs, for a checkpoint to be loaded into (eval)."""
        raise NotImplementedError

    def build_loss(self, cfg: Dict[str, Any], num_classes: int):
        raise NotImplementedError

    def build_mixup(self, cfg: Dict[str, Any], num_classes: int):
        """Batch-level mixing (``(inputs, targets) -> (inputs, targets)``) or None."""
        return None

    def from_official_layout(self, state_dict: Dict[str, Any], model_name: str) -> Dict[str, Any]:
        """An official checkpoint's state dict in our model's layout, or ``state_dict`` itself when it already
        is (ours, and the official classifiers, segmentors and pose models share our key names)."""
        return state_dict

    def num_outputs(self, state_dict: Dict[str, Any], checkpoint: str) -> int:
        """The number of classes a checkpoint's head predicts (an error naming the file if it has none)."""
        raise NotImplementedError

    def meter(self, num_classes: int, dataset=None):
        """A fresh metric accumulator over ``dataset`` (the set it scores; detection needs its annotations):
        ``update(outputs, targets)``, ``summary()`` (``metrics`` plus ``samples``) and, to combine processes,
        either ``as_vector()`` / ``load_vector(v)`` (additive counts: one all-reduce) or ``state()`` /
        ``merge(states)`` (anything else: gathered; see ``engine.distributed.reduce_meter``)."""
        raise NotImplementedError

    def has_unused_parameters(self, model) -> bool:
        """Whether some parameters get no gradient in a training step (DDP must then look for them)."""
        return False

    output_noun: str = "classes"  # what the model's outputs are (the report's synthetic-data note counts them)

    def chance_level(self, num_classes: int) -> Optional[float]:
        """The primary metric a model without information scores (reported next to smoke results), or None."""
        return None

    # --- batches: what the engine's loops do with one (``engine.train``, ``engine.evaluate``) ---
    # The defaults fit one tensor in, one tensor of targets; a task whose samples differ (several images of
    # different sizes, per-image box lists) overrides these four and nothing in the engine changes.
    def collate(self, samples: Sequence[Any], targets: Sequence[Any]) -> Tuple[Any, Any]:
        """One batch from a list of samples and their targets (runs in the loader workers)."""
        return stack(samples, targets)

    def to_device(self, inputs, targets, device, channels_last: bool) -> Tuple[Any, Any]:
        """The batch on ``device`` (inputs in the model's memory format when ``channels_last``)."""
        inputs, targets = inputs.to(device, non_blocking=True), _to(targets, device)
        return (to_channels_last(inputs) if channels_last else inputs), targets

    def train_loss(self, net, inputs, targets, loss_fn, mixup_fn) -> Tuple[Any, int]:
        """``(loss, samples in the batch)`` of one training forward (inside autocast)."""
        if mixup_fn is not None:
            inputs, targets = mixup_fn(inputs, targets)
        return loss_fn(net(inputs), targets), int(inputs.shape[0])

    def predict(self, model, inputs):
        """What ``meter.update`` takes for a batch of evaluation inputs (inside autocast, no grad)."""
        return model(inputs)

    def result_files(self, meter, classes: Sequence[str]) -> Dict[str, str]:
        """Extra files ``uniformer eval`` writes next to metrics.json: ``{file name: text}``."""
        return {}

    # --- paper table (``uniformer report``) ---
    gflops_column: str = "gflops"  # the paper_results.csv column compared with one measured forward pass
    params_published: bool = True  # whether the paper publishes parameter counts (a missing one is a problem)
    flops_checks: Tuple[str, ...] = ("params", "GFLOPs")  # what the verdict names when params / FLOPs agree
    plot_gflops: str = "gflops"  # the row field on the x axis of the accuracy-vs-GFLOPs figure
    plot_xlabel: str = "GFLOPs (multiply-adds, log scale)"
    summary_keys: Tuple[str, ...] = ()  # row fields in reports/<table>_metrics.json beyond the common ones
    report_caveat: str = ""  # appended to the tolerance sentence
    report_legend: str = ""  # what the measured columns mean

    # published figures known to be wrong, by entry: why (cited by the verdict when the measurement disagrees)
    errata: Dict[str, str] = {}

    def table_metric(self, table: "TableSpec", ev: Dict) -> Optional[float]:
        """The measured value compared with the table's primary published column (None: not comparable, e.g.
        another test protocol than that column's)."""
        return ev.get(table.result_key)

    def report_fields(self, table: "TableSpec", entry, prof: Optional[Dict], ev: Optional[Dict],
                      comparable: bool) -> Dict[str, Any]:
        """The task's own fields of a table row (after the common ones); ``prof``: the entry's profile row."""
        return {}

    def report_columns(self, table: "TableSpec") -> List[Column]:
        raise NotImplementedError

    # --- profiling (``uniformer profile``) ---
    profile_unit: str = "img"  # one input, in "s/<unit>"
    profile_rate: str = "img/s"  # throughput column unit
    profile_noun: str = "image"
    profile_legend: Tuple[str, ...] = ()  # report lines before the common ones ({tol}: the FLOPs tolerance)
    profile_section: str = ""  # a sub-dict of profile.<profile> whose keys override the profile's for this task
    profile_off: Tuple[str, ...] = ()  # profile options that do not apply to this task's models (must stay off)
    # result key -> submodule of the profiled model whose share of the FLOPs is kept (detection: the backbone)
    profile_flops_parts: Dict[str, str] = {}

    def profile_title(self, what: str) -> str:
        """The profile report's title; ``what`` names the table or data set (e.g. "Kinetics-400/600")."""
        return f"UniFormer {what} models: params, FLOPs and speed"

    def profile_inputs(self, entry) -> Tuple[int, ...]:
        """The shape of one input of ``entry`` (no batch dimension)."""
        raise NotImplementedError

    def profile_build_key(self, entry):
        """Entries with one key share one built model."""
        return entry.model

    def profile_model(self, entry):
        """The network ``entry`` is measured on (untrained weights)."""
        raise NotImplementedError

    def profile_fields(self, entry) -> Dict[str, Any]:
        """The task's own fields of a profile result (see ``profiling.report.build_rows``)."""
        return {}

    # profile report rows (``profiling.report``): by default one image per forward pass, compared with the
    # published figures (the video task adds frames and test views)
    def profile_row_fields(self, result):
        """The row's fields describing the input of one profile result (after entry, label, model, tag)."""
        return {"resolution": result.get("img_size")}

    def profile_totals(self, result):
        """FLOPs checks beyond one forward pass: (row fields after the GFLOPs ones, their Δ % for the verdict)."""
        return {}, None

    def profile_row_extra(self, result):
        """The row's fields after the verdict and published top-1 (before the speed columns)."""
        return {}

    def profile_cells(self, row):
        """The profile report's cells between the entry and the verdict: header -> text."""
        return {"Res": str(row["resolution"]), "Params M (pub / ours / Δ)": params_cell(row),
                "GFLOPs (pub / ours / Δ)": gflops_cell(row, "gflops")}

    def __repr__(self) -> str:
        return f"<task {self.name}>"


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """channels_last for images (4-D), channels_last_3d for clips (5-D); a 6-D batch of clip views
    ``(B, V, C, T, H, W)`` per clip, so flattening its first two dimensions keeps the layout."""
    if x.dim() == 6:
        return to_channels_last(x.flatten(0, 1)).unflatten(0, x.shape[:2])
    return x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)


def _to(x, device):
    """Tensors (also inside lists, tuples and dicts) moved to ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, (list, tuple)):
        return type(x)(_to(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


class Adapter(Protocol):
    """What a data set's format reader answers (``image_classification.ImageData`` is the short example).
    Constructed as ``adapter(dataset name, root, data.<dataset>.<profile> of params.yaml)``."""

    def ensure(self) -> None:
        """Write the synthetic set the profile names (``synth``) if the root is empty (smoke profile)."""

    def classes(self) -> List[str]:
        """Class names in label order."""

    def class_index_desc(self) -> str:
        """Where that order comes from (recorded in config.yaml, metrics.json and the tables)."""

    def eval_classes(self, trained: Optional[List[str]], checkpoint: str, num_classes: int) -> List[str]:
        """The classes to evaluate with: ours (``trained``, checked against the data) or an official
        checkpoint's (``trained`` None: the published order)."""

    def train_set(self, cfg: Dict[str, Any], model, classes: List[str]): ...

    def val_set(self, cfg: Dict[str, Any], model, classes: List[str]):
        """One view per sample, scored every epoch."""

    def train_protocol(self, cfg: Dict[str, Any], model, train_set) -> Dict[str, Any]:
        """What config.yaml / metrics.json record of the training input (input size, clip protocol)."""

    def test_set(self, eval_cfg: Dict[str, Any], model, classes: List[str], train_cfg: Dict[str, Any]):
        """``(dataset, protocol)`` of the published evaluation; ``protocol`` (flat values, ``views`` if not 1)
        goes into metrics.json."""

    def manifest(self) -> str:
        """A content hash of the data (MLflow tag, metrics.json)."""


@dataclass(frozen=True)
class DataAction:
    """One ``uniformer data synth|check <name>`` subcommand: its options and what it does."""
    name: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]  # synth: exit code; check: a report (.problems, .ok, .summary())
    # the options the workflow passes from data.<name>.<settings> (besides --root / --out), e.g. the split lists
    config_args: Callable[[Dict[str, Any]], List[str]] = lambda data: []


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: Task
    table: str
    title: str  # human name, e.g. "Kinetics-400"
    adapter: Callable[[str, os.PathLike, Dict[str, Any]], Adapter]  # (name, root, data.<name>.<profile>)
    short: str = ""  # abbreviation in table cells, e.g. "K400"
    entries: Callable[[], List[Any]] = list  # the published entries measured on it (models.catalog.Entry)
    check: Optional[DataAction] = None
    synth: Optional[DataAction] = None  # may be shared (kinetics400 / 600: one ``kinetics`` writer)
    # params.yaml data.<name>.<profile>.source values meaning the real data (accuracy comparable with the
    # paper); the first is the one the report names
    real_sources: Tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    task: Task
    datasets: Tuple[str, ...]  # the `uniformer train|eval <dataset>` names it is measured on
    short_title: str = ""  # for the profile report, e.g. "Kinetics-400/600"
    accuracy: str = "top1"  # the paper_results.csv column of the primary metric (the verdict and the gate's)
    accuracy_label: str = "Top-1 (%)"
    metric: str = ""  # its metrics.json key when that is named otherwise (ADE20K: miou -> mIoU)
    gate_metrics: Tuple[str, ...] = ()  # the metrics.json keys the smoke gate holds (default: the primary one)

    @property
    def result_key(self) -> str:
        return self.metric or self.accuracy

    def entries(self) -> List[Any]:
        return [e for d in self.datasets for e in get_dataset(d).entries()]

    def dataset_of(self, entry) -> str:
        """The data set an entry is trained / evaluated on: its paper_results.csv task if that is one of ours."""
        d = entry.row.get("task")
        return d if d in self.datasets else self.datasets[0]

    def entry(self, name: str):
        """An entry by ``model.tag`` or by bare model name (the model's default pretrained tag, e.g. in1k_224)."""
        entries = self.entries()
        if "." not in name:
            cfg = get_pretrained_cfg(name)
            name = f"{name}.{cfg.tag}" if cfg is not None else name
        for e in entries:
            if e.name == name:
                return e
        raise KeyError(f"table {self.name}: no published entry '{name}' (known: {[e.name for e in entries]})")

    def real_sources(self) -> Tuple[str, ...]:
        return tuple(s for d in self.datasets for s in get_dataset(d).real_sources)

    def profile_json(self, profile: str, root: Path = RESULTS) -> Path:
        return root / "profile" / self.name / f"{profile}.json"

    def train_dir(self, model: str, profile: str, root: Path = RESULTS) -> Path:
        return root / "train" / self.name / model / profile

    def eval_dir(self, entry: str, profile: str, root: Path = RESULTS) -> Path:
        return root / "eval" / self.name / entry / profile

    def report_stem(self, out_dir: Path = Path("reports")) -> Path:
        return out_dir / self.name

    def baseline(self, profile: str) -> Path:
        return PROJECT_ROOT / "reports" / "baselines" / f"{self.name}_{profile}.json"


# --- registration ------------------------------------------------------------------------------------------
def _add(registry: Dict[str, Any], kind: str, name: str, obj):
    if name in registry and registry[name] is not obj:
        raise ValueError(f"{kind} '{name}' is registered twice")
    registry[name] = obj
    return obj


def register_task(task: Task) -> Task:
    return _add(_TASKS, "task", task.name, task)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.synth is not None:
        _add(_SYNTH, "synthetic writer", spec.synth.name, spec.synth)
    return _add(_DATASETS, "data set", spec.name, spec)


def register_table(spec: TableSpec) -> TableSpec:
    for d in spec.datasets:
        if get_dataset(d).table != spec.name:
            raise ValueError(f"table '{spec.name}': data set '{d}' belongs to table '{get_dataset(d).table}'")
    return _add(_TABLES, "table", spec.name, spec)


# --- look-ups ------------------------------------------------------------------------------------------------
def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r} (known: {', '.join(_TASKS)})")
    return _TASKS[name]


def get_dataset(name: str) -> DatasetSpec:
    if name not in _DATASETS:
        raise ConfigError(f"unknown data set {name!r} (known: {', '.join(_DATASETS)})")
    return _DATASETS[name]


def get_table(name: str) -> TableSpec:
    if name not in _TABLES:
        raise KeyError(f"unknown table '{name}' (known: {sorted(_TABLES)})")
    return _TABLES[name]


def data_source(dataset: str, root: os.PathLike) -> str:
    """Where a result's data came from, read from the data (not from the settings' name): our synthetic writers'
    manifest or marker, else the data set's real name (its first ``real_sources``), e.g. ``imagenet-val``."""
    from ..data.synth_out import data_source as read_source

    source = read_source(root)
    real = get_dataset(dataset).real_sources
    return real[0] if source == "real" and real else source


def table_of(dataset: str) -> str:
    """The paper table a data set's results and MLflow runs are filed under."""
    return get_dataset(dataset).table


def task_of(dataset: str) -> Task:
    return get_dataset(dataset).task


def dataset_names() -> Tuple[str, ...]:
    return tuple(_DATASETS)


def datasets() -> Dict[str, DatasetSpec]:
    return dict(_DATASETS)


def tables() -> Dict[str, TableSpec]:
    """Every registered table, by name (the live registry: plugins loaded later appear here too)."""
    return _TABLES


def synth_writers() -> Dict[str, DataAction]:
    return dict(_SYNTH)


def register_data_tools(name: str, check: Optional[DataAction] = None, synth: Optional[DataAction] = None) -> None:
    """A data format's ``uniformer data check|synth <name>`` before (or without) a task of its own."""
    if check is not None:
        _add(_CHECKS, "checker", name, check)
    if synth is not None:
        _add(_SYNTH, "synthetic writer", name, synth)


def checkers() -> Dict[str, DataAction]:
    """``uniformer data check`` subcommands: every registered data set's checker, then the standalone ones."""
    return {**{n: d.check for n, d in _DATASETS.items() if d.check is not None}, **_CHECKS}


def open_data(dataset: str, root: os.PathLike, data_cfg: Dict[str, Any]):
    """The adapter (format reader) of ``dataset`` over ``root`` with its ``data.<dataset>.<profile>`` block."""
    return get_dataset(dataset).adapter(dataset, root, data_cfg)


def load_plugins(modules: Optional[str] = None) -> None:
    """Import the modules of ``$UNIFORMER_PLUGINS`` (comma-separated); each registers its tasks, data sets
    and tables on import, like the built-in task modules."""
    for name in (modules if modules is not None else os.environ.get(PLUGINS_ENV, "")).split(","):
        if name.strip():
            importlib.import_module(name.strip())
