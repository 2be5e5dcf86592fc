"""End-to-end smoke pipeline on CPU: synthetic data -> check -> train -> eval, resume, DDP and MLflow.

One synthetic data set (the smoke profile's, with one truncated training image) and one smoke training
run + evaluation are shared by the module; everything is written under pytest's tmp_path and MLflow logs
to a temporary sqlite store. Every command runs as a subprocess through the real CLI (``python -m
uniformer.cli``), as a user or the workflow would run it.
"""
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from uniformer.config import load_params

pytestmark = pytest.mark.e2e

MODEL = "uniformer_xxs"
TIMEOUT = 900


def _env(mlflow_uri=None, **extra):
    env = dict(os.environ)
    env.pop("UNIFORMER_PROFILE", None)
    env["UNIFORMER_NO_MLFLOW"] = "0" if mlflow_uri else "1"
    if mlflow_uri:
        env["MLFLOW_TRACKING_URI"] = mlflow_uri
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _run(args, cwd, env, timeout=TIMEOUT, expect=0):
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if expect is not None and proc.returncode != expect:
        raise AssertionError(f"{' '.join(map(str, args))} -> rc {proc.returncode} (expected {expect})\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}")
    proc.seconds = time.perf_counter() - t0
    return proc


def uniformer(*args, cwd, env, **kw):
    return _run([sys.executable, "-m", "uniformer.cli", *map(str, args)], cwd, env, **kw)


def read_json(path):
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def smoke_params():
    params = load_params()
    return params["data"]["imagenet"]["smoke"], params["train"]["imagenet"]["smoke"]


@pytest.fixture(scope="module")
def dataset(workspace, smoke_params):
    """The smoke profile's synthetic set, written and checked through the CLI, then one train image truncated."""
    s = smoke_params[0]["synth"]
    root = workspace / "imagenet"
    env = _env()
    uniformer("data", "synth", "imagenet", "--out", root, "--classes", s["classes"], "--train-per-class",
              s["train_per_class"], "--val-per-class", s["val_per_class"], "--size", s["size"], "--seed", s["seed"],
              cwd=workspace, env=env)
    assert "OK" in uniformer("data", "check", "imagenet", "--root", root, cwd=workspace, env=env).stdout
    bad = sorted((root / "train").glob("*/*.JPEG"))[3]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # truncated JPEG: decoding fails
    report = uniformer("data", "check", "imagenet", "--root", root, cwd=workspace, env=env, expect=1)
    assert bad.name in report.stdout + report.stderr
    return {"root": root, "bad": bad, "classes": s["classes"], "train": s["classes"] * s["train_per_class"],
            "val": s["classes"] * s["val_per_class"]}


@pytest.fixture(scope="module")
def smoke(workspace, dataset):
    """`uniformer train imagenet --profile smoke` then `uniformer eval imagenet` on its last.pth, MLflow on."""
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    env = _env(uri)
    out, ev = workspace / "train", workspace / "eval"
    train = uniformer("train", "imagenet", "--profile", "smoke", "--data-root", dataset["root"], "--out", out,
                      "--no-progress", cwd=workspace, env=env)
    evaluation = uniformer("eval", "imagenet", "--profile", "smoke", "--checkpoint", out / "last.pth",
                           "--data-root", dataset["root"], "--out", ev, "--no-progress", cwd=workspace, env=env)
    print(f"\nsmoke train: {train.seconds:.0f} s wall, eval: {evaluation.seconds:.0f} s wall")
    return {"out": out, "eval": ev, "uri": uri, "metrics": read_json(out / "metrics.json"),
            "eval_metrics": read_json(ev / "metrics.json"), "train_seconds": train.seconds}


def test_smoke_training_and_eval_beat_chance(smoke, dataset, smoke_params):
    m, e = smoke["metrics"], smoke["eval_metrics"]
    chance = 100.0 / dataset["classes"]
    print(f"smoke: val top-1 {m['val_top1']:.1f} (chance {chance:.1f}), eval top-1 {e['top1']:.1f}, "
          f"train {m['train_time_s']:.0f} s, {m['img_per_s']:.1f} img/s")
    assert m["model"] == MODEL and m["epochs"] == smoke_params[1]["epochs"] == len(m["history"])
    assert m["chance_top1"] == pytest.approx(chance)
    assert m["val_top1"] >= 3 * chance
    assert e["top1"] >= 3 * chance and e["samples"] == dataset["val"]
    # eval reloads last.pth with the published eval transform at the training resolution: the same numbers
    # up to float noise of the inference rewrite (BN folding): at most one image may flip
    assert abs(e["top1"] - m["val_top1"]) <= 100.0 / dataset["val"] + 1e-9
    recipe = smoke_params[1]
    assert e["checkpoint_kind"] == "ours" and e["weights"] == "model" and e["img_size"] == recipe["img_size"]
    for name in ("last.pth", "best.pth", "config.yaml", "metrics.json"):
        assert (smoke["out"] / name).is_file(), name
    assert not list(smoke["out"].glob(".*.tmp"))
    resolved = yaml.safe_load((smoke["out"] / "config.yaml").read_text())
    assert resolved["global_batch"] == recipe["batch_size"]  # one process, no accumulation
    assert resolved["lr"] == pytest.approx(recipe["base_lr"] * recipe["batch_size"] / recipe["lr_base_size"])
    rows = (smoke["eval"] / "per_class.csv").read_text().splitlines()
    assert rows[0] == "label,class,samples,correct,top1" and len(rows) == 1 + dataset["classes"]
    assert all(re.fullmatch(r"n0\d{7}", r.split(",")[1]) for r in rows[1:])  # ImageNet class names: wnids
    assert sum(int(r.split(",")[2]) for r in rows[1:]) == dataset["val"]
    assert sum(int(r.split(",")[3]) for r in rows[1:]) == round(e["top1"] * dataset["val"] / 100)


def test_corrupt_image_is_skipped_and_counted(smoke):
    m = smoke["metrics"]
    # the truncated image, once per epoch it is drawn (drop_last may leave it out of an epoch)
    assert 1 <= m["skipped_samples"] <= m["epochs"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(smoke["uri"])
    run = _runs_by_name(client)[f"train/{MODEL}/smoke"][0]
    assert run.data.metrics["skipped_samples"] == m["skipped_samples"]


def _runs_by_name(client):
    exp = client.get_experiment_by_name("imagenet")
    assert exp is not None, "no 'imagenet' experiment in the MLflow store"
    out = {}
    for r in client.search_runs([exp.experiment_id], max_results=1000):
        out.setdefault(r.info.run_name, []).append(r)
    return out


def test_mlflow_has_train_and_eval_runs(smoke, dataset):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(smoke["uri"])
    runs = _runs_by_name(client)
    assert set(runs) == {f"train/{MODEL}/smoke", f"eval/{MODEL}/smoke"}
    train, evaluation = runs[f"train/{MODEL}/smoke"][0], runs[f"eval/{MODEL}/smoke"][0]
    m, e = smoke["metrics"], smoke["eval_metrics"]
    for run in (train, evaluation):
        assert run.info.status == "FINISHED"
        assert run.data.tags["data_source"] == "synthetic (imagenet-synthetic, seed 0)"  # read from the data
        assert run.data.tags["dataset_manifest"] == m["dataset_manifest"]
        assert run.data.tags["settings"] == "smoke" and run.data.tags["model"] == MODEL
    assert train.data.tags["stage"] == "train" and evaluation.data.tags["stage"] == "eval"
    # params: the resolved config
    p = train.data.params
    assert p["model"] == MODEL and p["epochs"] == str(m["epochs"]) and p["img_size"] == str(m["img_size"])
    assert p["data.root"] == str(dataset["root"]) and float(p["lr"]) == pytest.approx(m["lr"])
    assert evaluation.data.params["checkpoint"].endswith("last.pth")
    # per-epoch metrics and the final ones
    history = client.get_metric_history(train.info.run_id, "val_top1")
    assert [h.step for h in sorted(history, key=lambda h: h.step)] == list(range(1, m["epochs"] + 1))
    assert sorted(history, key=lambda h: h.step)[-1].value == pytest.approx(m["val_top1"])
    assert len(client.get_metric_history(train.info.run_id, "train_loss")) == m["epochs"]
    assert train.data.metrics["final_val_top1"] == pytest.approx(m["val_top1"])
    assert evaluation.data.metrics["top1"] == pytest.approx(e["top1"])
    assert evaluation.data.metrics["top5"] == pytest.approx(e["top5"])
    # artifacts
    assert {"metrics.json", "config.yaml"} <= {a.path for a in client.list_artifacts(train.info.run_id)}
    assert {"metrics.json", "per_class.csv"} <= {a.path for a in client.list_artifacts(evaluation.info.run_id)}


def test_killed_and_resumed_run_matches_uninterrupted(workspace, dataset):
    """Same seed: 2 epochs straight == 1 epoch, exit, --resume for the 2nd (bitwise on CPU, with loader workers)."""
    env = _env()
    # 32 px: resume does not depend on the input size, and a quarter of the smoke pixels keeps the test short
    args = ["train", "imagenet", "--profile", "smoke", "--data-root", dataset["root"], "--no-progress",
            "epochs=2", "workers=1", "img_size=32"]
    full, parts = workspace / "resume_full", workspace / "resume_parts"
    uniformer(*args, "--out", full, cwd=workspace, env=env)
    uniformer(*args, "--out", parts, "--stop-after-epoch", "1", cwd=workspace, env=env)
    assert not (parts / "metrics.json").exists()  # "killed" after epoch 1: only its checkpoint
    import torch

    ckpt = torch.load(parts / "last.pth", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and {"python", "numpy", "torch", "data"} <= set(ckpt["rng"][0])
    assert {"model", "optimizer", "scheduler", "scaler", "model_ema"} <= set(ckpt)
    uniformer(*args, "--out", parts, "--resume", cwd=workspace, env=env)
    a, b = read_json(full / "metrics.json"), read_json(parts / "metrics.json")
    assert b["resumed"] and not a["resumed"]
    for key in ("train_loss", "val_top1", "val_top5", "val_loss", "best_val_top1", "skipped_samples", "epochs"):
        assert a[key] == b[key], key  # exact, not approx
    strip = lambda h: [{k: v for k, v in e.items() if k != "img_per_s"} for e in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    sd_a = torch.load(full / "last.pth", map_location="cpu", weights_only=True)["model"]
    sd_b = torch.load(parts / "last.pth", map_location="cpu", weights_only=True)["model"]
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


def test_ddp_two_processes_on_cpu(workspace, dataset, smoke_params):
    """torchrun --nproc_per_node 2 (gloo): one short epoch finishes and writes metrics for the global batch."""
    out = workspace / "ddp"
    env = _env(OMP_NUM_THREADS=1)
    per_rank = dataset["train"] // 2
    batch = max(b for b in range(1, 33) if per_rank % b == 0)  # no batch dropped: every image seen once
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "uniformer.cli", "train", "imagenet", "--profile", "smoke", "--data-root", str(dataset["root"]),
          "--out", str(out), "--no-progress", "epochs=1", f"batch_size={batch}"], workspace, env)
    m = read_json(out / "metrics.json")
    recipe = smoke_params[1]
    assert m["world_size"] == 2 and m["global_batch"] == 2 * batch
    assert m["lr"] == pytest.approx(recipe["base_lr"] * 2 * batch / recipe["lr_base_size"])  # linear scaling
    assert m["epochs"] == 1 and m["val_top1"] is not None and m["train_loss"] > 0
    assert m["skipped_samples"] == 1  # the truncated image lies in exactly one rank's shard, counted once
    import torch

    ckpt = torch.load(out / "last.pth", map_location="cpu", weights_only=True)
    assert len(ckpt["rng"]) == 2 and ckpt["world_size"] == 2  # each rank's RNG streams, for --resume


def test_two_processes_logging_to_one_sqlite_store_lose_no_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = textwrap.dedent("""
        import sys
        from uniformer.tracking import start_run
        who = sys.argv[1]
        for i in range(4):
            with start_run(table="imagenet", stage="train", model=f"m{who}_{i}", profile="smoke",
                           params={"who": who, "i": i, "nested": {"a": 1}}) as run:
                for step in range(3):
                    run.log_metrics({"loss": 1.0 / (step + 1), "who": int(who)}, step=step)
    """)
    env = _env(uri)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in (1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, err[-4000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = [r for rs in _runs_by_name(client).values() for r in rs]
    assert sorted(r.info.run_name for r in runs) == sorted(f"train/m{w}_{i}/smoke" for w in (1, 2) for i in range(4))
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.params["nested.a"] == "1"
        assert len(client.get_metric_history(r.info.run_id, "loss")) == 3
