"""The registry is the only place a task is declared: a toy task the package has never heard of
(``tests/toy_task.py``: its own data format, synthetic writer, checker, model, loss and table), loaded as a
plugin through ``$UNIFORMER_PLUGINS``, runs ``data synth`` -> ``data check`` -> ``train`` -> ``eval`` ->
``report`` -> ``check`` through the normal CLI (``uniformer.cli.main``, in a fresh interpreter so the
plugin's registrations do not leak into the other tests)."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLASSES, VAL_PER_CLASS = 4, 24
CHANCE = 100.0 / CLASSES
MARGIN = 50.0  # the toy MLP must beat chance (25 %) by this many points; blobs this far apart give ~100 %

TRAIN = dict(
    model="toy_mlp.blobs", model_kwargs={"in_features": 8, "hidden": 32}, epochs=20, batch_size=32, accum_steps=1,
    workers=0, opt="adamw", base_lr=0.01, lr_base_size=32, lr=None, weight_decay=0.0, opt_eps=None, opt_betas=None,
    momentum=0.9, clip_grad=None, sched="cosine", sched_on_updates=True, warmup_epochs=0, warmup_prefix=False,
    warmup_lr=1e-5, min_lr=1e-4, cooldown_epochs=0, drop=0.0, drop_path=0.0, smoothing=0.0, mixup=0.0, cutmix=0.0,
    cutmix_minmax=None, mixup_prob=1.0, mixup_switch_prob=0.5, mixup_mode="batch", model_ema=False,
    model_ema_decay=0.99, eval_ema=False, amp="none", channels_last=False, seed=0, deterministic=True,
    eval_batch_size=64, eval_every=5)
PARAMS = {
    "settings": "smoke",
    "data": {"blobs": {"smoke": {"root": "data/blobs", "source": "toy-blobs"}}},
    "train": {"blobs": {"smoke": TRAIN}},
    "eval": {"blobs": {"smoke": {"batch_size": 64, "workers": 0, "precision": "fp32", "channels_last": False,
                                 "compile": False}}},
    "tables": {"toy": {"smoke": {"mode": "train", "train": ["toy_mlp.blobs"], "checkpoints": {},
                                 "tolerance": {"flops_pct": 3.5, "top1": 25.0},
                                 "gate": {"alpha": 0.01, "efficiency_drop": 0.35, "machine_drop": 0.4}}}},
}
STEPS = [
    ["tables", "--datasets"],
    ["data", "synth", "blobs", "--out", "data/blobs", "--classes", str(CLASSES), "--val-per-class",
     str(VAL_PER_CLASS)],
    ["data", "check", "blobs", "--root", "data/blobs"],
    ["train", "blobs", "--no-progress"],
    ["eval", "blobs", "--checkpoint", "results/train/toy/toy_mlp.blobs/smoke/last.pth", "--no-progress"],
    ["report", "toy"],
    ["check", "toy", "--baseline", "baseline.json", "--update-baseline"],
    ["check", "toy", "--baseline", "baseline.json"],
]
RUN = """import json, sys
from uniformer.cli import main
for argv in json.loads(sys.argv[1]):
    rc = main(argv)
    if rc:
        sys.exit(f"uniformer {' '.join(argv)}: exit {rc}")
"""


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("toy")
    (work / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    env = {**os.environ, "UNIFORMER_PLUGINS": "tests.toy_task", "UNIFORMER_PARAMS": str(work / "params.yaml"),
           "UNIFORMER_NO_MLFLOW": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                                   os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-c", RUN, json.dumps(STEPS)], cwd=work, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work, r.stdout


def test_toy_task_is_listed_and_its_data_checked(toy_run):
    work, out = toy_run
    assert "toy: toy_tabular: blobs (Gaussian blobs)" in out  # `uniformer tables --datasets`
    assert "imagenet: image_classification: imagenet" in out  # the built-in tasks are still there
    assert "blobs OK (train: 192 rows, val: 96 rows)" in out  # `uniformer data check blobs`


def test_toy_task_trains_and_evaluates_above_chance(toy_run):
    work, _ = toy_run
    train = json.loads((work / "results/train/toy/toy_mlp.blobs/smoke/metrics.json").read_text())
    assert (train["table"], train["dataset"], train["epochs"], train["features"]) == ("toy", "blobs", 20, 8)
    assert train["chance_top1"] == CHANCE and train["val_top1"] >= CHANCE + MARGIN, train
    assert "val_top5" not in train  # the toy task's metrics are top1 and loss only
    ev = json.loads((work / "results/eval/toy/toy_mlp.blobs/smoke/metrics.json").read_text())
    assert ev["samples"] == CLASSES * VAL_PER_CLASS and ev["views"] == 1 and ev["checkpoint_kind"] == "ours"
    assert ev["top1"] >= CHANCE + MARGIN and ev["top1"] == pytest.approx(train["val_top1"], abs=1e-9)
    rows = list(csv.DictReader((work / "results/eval/toy/toy_mlp.blobs/smoke/per_class.csv").open()))
    assert [r["class"] for r in rows] == [f"blob_{k}" for k in range(CLASSES)]
    assert sum(int(r["correct"]) for r in rows) == round(ev["top1"] * ev["samples"] / 100)


def test_toy_table_report_and_gate(toy_run):
    work, out = toy_run
    top1 = json.loads((work / "results/eval/toy/toy_mlp.blobs/smoke/metrics.json").read_text())["top1"]
    md = (work / "reports/toy.md").read_text()
    assert md.startswith("# Toy tabular classification: published vs measured")
    assert "| Model | Top-1 (%) pub. | meas. | Δ | Accuracy data | Verdict |" in md
    assert f"| Toy MLP @8 [hidden=32, in_features=8] | 100.00 | {top1:.2f} | {top1 - 100:+.2f} | toy-blobs | within tolerance (top1) |" in md
    (row,) = list(csv.DictReader((work / "reports/toy.csv").open()))
    assert row["entry"] == "toy_mlp.blobs" and float(row["top1"]) == pytest.approx(top1, rel=1e-5)
    assert json.loads((work / "baseline.json").read_text())["accuracy"]["toy_mlp.blobs"]["top1"] == top1
    assert "regression gate passed" in out
