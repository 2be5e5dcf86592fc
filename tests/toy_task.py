"""A toy task registered only by the test suite: tabular classification of Gaussian blobs.

It proves the registry is the only place the pipeline learns about a task: loaded as a plugin
(``UNIFORMER_PLUGINS=tests.toy_task``), it gets ``uniformer data synth|check blobs``, ``train blobs``,
``eval blobs`` and ``report toy`` with no change anywhere else. Everything a real task declares is here:

- data set ``blobs`` (table ``toy``): format ``ROOT/classes.txt`` + ``ROOT/{train,val}.csv`` with rows
  ``label,x0,...,x<D-1>``; an adapter reading it, a synthetic writer, a checker;
- task ``toy_tabular``: an MLP (model factory), cross-entropy (loss), top-1 / loss and per-class accuracy
  (metrics, shared with the classification tasks), one view per sample (eval protocol), table columns and
  profile inputs;
- table ``toy`` with one published entry, ``toy_mlp.blobs``, "published" at 100 % top-1.
"""
import argparse
import csv
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from uniformer.models.catalog import Entry
from uniformer.tasks.base import (Column, DataAction, DatasetSpec, TableSpec, Task, register_dataset, register_table,
                                  register_task)
from uniformer.tasks.classification import AccuracyCounter

SPLITS = ("train", "val")


# --- format: synthetic writer and checker ----------------------------------------------------------------------
def write_blobs(root, classes: int = 4, train_per_class: int = 48, val_per_class: int = 24, dims: int = 8,
                seed: int = 0) -> Dict[str, Any]:
    """One Gaussian blob per class (centres 3 sigma apart on average): linearly separable, so a small MLP
    learns it in a few epochs. Deterministic per seed."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(classes, dims))
    names = [f"blob_{k}" for k in range(classes)]
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        with (root / f"{split}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label"] + [f"x{i}" for i in range(dims)])
            for k in range(classes):
                for x in centres[k] + rng.normal(size=(n, dims)):
                    w.writerow([k] + [f"{v:.5f}" for v in x])
    return {"classes": names, "sha256": _sha256(root)}


def _sha256(root: Path) -> str:
    h = hashlib.sha256()
    for name in ("classes.txt",) + tuple(f"{s}.csv" for s in SPLITS):
        h.update((root / name).read_bytes())
    return h.hexdigest()


@dataclass
class BlobsReport:
    root: str
    problems: List[str] = field(default_factory=list)
    rows: Dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        sizes = ", ".join(f"{k}: {n} rows" for k, n in self.rows.items())
        return f"{self.root}: blobs {'OK' if self.ok else f'{len(self.problems)} problem(s)'} ({sizes})"


def check_blobs(root) -> BlobsReport:
    """Every file there, every row parses, one width, labels within the class list."""
    root, report = Path(root), BlobsReport(str(root))
    if not (root / "classes.txt").is_file():
        report.problems.append(f"{root / 'classes.txt'}: missing")
        return report
    num_classes = len((root / "classes.txt").read_text().split())
    for split in SPLITS:
        path = root / f"{split}.csv"
        if not path.is_file():
            report.problems.append(f"{path}: missing")
            continue
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        width = len(rows[0])
        for i, row in enumerate(rows[1:], 2):
            try:
                label, values = int(row[0]), [float(v) for v in row[1:]]
            except (ValueError, IndexError):
                report.problems.append(f"{path}:{i}: not a row of numbers")
                continue
            if len(values) + 1 != width or not 0 <= label < num_classes:
                report.problems.append(f"{path}:{i}: {len(values)} values, label {label} (of {num_classes})")
        report.rows[split] = len(rows) - 1
    return report


# --- adapter (format reader) -----------------------------------------------------------------------------------
class BlobsSet(torch.utils.data.Dataset):
    def __init__(self, path: Path):
        data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32, ndmin=2)
        self.x, self.y = torch.from_numpy(data[:, 1:]), torch.from_numpy(data[:, 0]).long()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class BlobsData:
    def __init__(self, dataset: str, root: os.PathLike, data_cfg: Dict[str, Any]):
        self.dataset, self.root, self.cfg = dataset, Path(root), data_cfg

    def ensure(self) -> None:
        if not (self.root / "train.csv").is_file() and self.cfg.get("synth"):
            print(f"{self.root}: no data set; writing the synthetic one", file=sys.stderr)
            write_blobs(self.root, **self.cfg["synth"])

    def classes(self) -> List[str]:
        return (self.root / "classes.txt").read_text().split()

    def class_index_desc(self) -> str:
        return "classes.txt"

    def eval_classes(self, trained: Optional[List[str]], checkpoint: str, num_classes: int) -> List[str]:
        return trained if trained is not None else self.classes()

    def train_set(self, cfg, model, classes):
        return BlobsSet(self.root / "train.csv")

    def val_set(self, cfg, model, classes):
        return BlobsSet(self.root / "val.csv")

    def train_protocol(self, cfg, model, train_set) -> Dict[str, Any]:
        return {"features": int(train_set.x.shape[1])}

    def test_set(self, eval_cfg, model, classes, train_cfg):
        ds = BlobsSet(self.root / "val.csv")
        return ds, {"features": int(ds.x.shape[1]), "views": 1}

    def manifest(self) -> str:
        return _sha256(self.root)


# --- the task ----------------------------------------------------------------------------------------------------
class ToyMLP(nn.Module):
    def __init__(self, in_features: int, hidden: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


class CrossEntropy(nn.Module):
    def forward(self, output, target, input_hw=None):  # the trainer also passes the input's trailing dims
        return F.cross_entropy(output, target)


class ToyTabular(Task):
    name = "toy_tabular"
    metrics = ("top1", "loss")

    def build_model(self, cfg, num_classes):
        return self.create_model(cfg["model"], num_classes, cfg["model_kwargs"])

    def create_model(self, name, num_classes, model_kwargs):
        assert name.split(".")[0] == "toy_mlp", name
        return ToyMLP(int(model_kwargs["in_features"]), int(model_kwargs["hidden"]), num_classes)

    def build_loss(self, cfg, num_classes):
        return CrossEntropy()

    def num_outputs(self, state_dict, checkpoint):
        return int(state_dict["head.weight"].shape[0])

    def meter(self, num_classes, dataset=None):
        return AccuracyCounter(num_classes)

    def chance_level(self, num_classes):
        return 100.0 / num_classes

    def result_files(self, meter, classes):
        return {"per_class.csv": meter.per_class_csv(classes)}

    def report_columns(self, table):
        return [Column("Model", "model", align="l"), Column(table.accuracy_label, table.accuracy, compare="abs"),
                Column("Accuracy data", "data_source", align="l"), Column("Verdict", "verdict", align="l")]

    def profile_inputs(self, entry):
        return (entry.img_size,)

    def profile_model(self, entry):
        return ToyMLP(entry.img_size, 32, 4)


def _synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--train-per-class", type=int, default=48)
    p.add_argument("--val-per-class", type=int, default=24)
    p.add_argument("--dims", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)


def _synth(args) -> int:
    m = write_blobs(args.out, args.classes, args.train_per_class, args.val_per_class, args.dims, args.seed)
    print(f"{args.out}: blobs, {len(m['classes'])} classes, sha256 {m['sha256']}")
    return 0


ENTRY = Entry("toy_mlp", "blobs", 8, {"task": "blobs", "model_label": "Toy MLP", "params_m": "", "gflops": "",
                                      "top1": "100.0", "notes": ""})
TASK = register_task(ToyTabular())
register_dataset(DatasetSpec(
    "blobs", TASK, "toy", "Gaussian blobs", BlobsData, entries=lambda: [ENTRY],
    check=DataAction("blobs", lambda p: p.add_argument("--root", required=True), lambda a: check_blobs(a.root)),
    synth=DataAction("blobs", _synth_arguments, _synth), real_sources=("toy-blobs",)))
register_table(TableSpec("toy", "Toy tabular classification", TASK, ("blobs",), short_title="toy"))
