"""Resume under the workflows: `kill -9` of Snakemake / `dvc repro` while training runs, then the same command again.

In a copy of the repository (with a small synthetic ImageNet and a short training so that it takes minutes): the
second invocation resumes training after the last completed epoch, and the final numbers and weights equal those
of an uninterrupted `uniformer train` with the same configuration. Under DVC, a changed recipe
(`dvc exp run -S train.imagenet.smoke.epochs=...`) is never resumed: it trains afresh for the new epoch count.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TRAIN = Path("results/train/imagenet/uniformer_xxs/smoke")
EPOCHS = 6
# Small enough for minutes on 2 cores; EPOCHS long enough that the kill lands mid-training.
SMALL = {
    "data": {"imagenet": {"smoke": {"synth": {"classes": 4, "train_per_class": 32, "val_per_class": 8, "size": 32,
                                              "seed": 0}}}},
    "train": {"imagenet": {"smoke": {"epochs": EPOCHS, "img_size": 32, "batch_size": 16, "eval_batch_size": 32}}},
}
COMPARED = ("train_loss", "val_top1", "val_top5", "val_loss", "best_val_top1", "skipped_samples", "epochs")

pytestmark = pytest.mark.e2e


def _env(**extra):
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1",
            **extra}


def _run(cmd, cwd, **extra):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(**extra), capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, (cmd, r.stdout[-3000:], r.stderr[-3000:])
    return r


def _merge(base, over):
    for k, v in over.items():
        base[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


@pytest.fixture
def repo(tmp_path):
    """A git repository holding what a clone of this checkout holds."""
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_bytes((ROOT / rel).read_bytes())
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        _run(cmd, repo)
    return repo


def _kill_when_first_epoch_is_saved(cmd, cwd, log):
    """Start ``cmd`` in its own process group and SIGKILL the whole group once training saved epoch 1."""
    with open(log, "w") as out:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    ckpt, deadline = cwd / TRAIN / "last.pth", time.monotonic() + 900
    while not ckpt.exists():
        assert proc.poll() is None, f"{cmd} ended before training saved a checkpoint:\n{Path(log).read_text()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 15 minutes"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]
    assert 1 <= saved < EPOCHS and not (cwd / TRAIN / "metrics.json").exists(), "killed after training finished"
    return saved


def _uninterrupted(cwd, params_file, out, **env):
    """The same training, in one go, with the same configuration and threads (the reference)."""
    _run([BIN / "uniformer", "train", "imagenet", "--model", "uniformer_xxs", "--profile", "smoke", "--data-root",
          "data/synthetic/imagenet", "--out", out, "--no-progress"], cwd, UNIFORMER_PARAMS=str(params_file), **env)
    return yaml.safe_load((cwd / out / "metrics.json").read_text())


def _assert_same_run(resumed_dir, reference_dir, epochs):
    import json

    a = json.loads((reference_dir / "metrics.json").read_text())
    b = json.loads((resumed_dir / "metrics.json").read_text())
    assert b["resumed"] and not a["resumed"] and b["epochs"] == a["epochs"] == epochs
    for key in COMPARED:
        assert a[key] == b[key], key  # exact: CPU training resumed with every RNG state is bitwise the same
    sd_a = torch.load(reference_dir / "last.pth", map_location="cpu", weights_only=True)["model"]
    sd_b = torch.load(resumed_dir / "last.pth", map_location="cpu", weights_only=True)["model"]
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


def test_killed_snakemake_run_resumes_where_it_stopped(repo):
    (repo / "small.yaml").write_text(yaml.safe_dump(SMALL))
    # the training rule's output as the target: what comes after it (eval, profile, report) is not about resume
    # one core: Snakemake sets the job's OMP_NUM_THREADS to its threads, and the reference below runs with as many
    # (a float sum over 2 threads differs in the last bits from one over 1)
    cmd = [BIN / "snakemake", "--cores", "1", TRAIN / "metrics.json", "--configfile", "params.yaml", "small.yaml"]
    saved = _kill_when_first_epoch_is_saved(cmd, repo, repo / "first.log")
    again = _run(cmd, repo)  # the same command, no extra flag
    train_log = (repo / "logs/train/imagenet_uniformer_xxs.log").read_text()
    assert f"resuming after epoch {saved}" in train_log, train_log[-2000:]
    assert "Finished" in again.stderr + again.stdout
    params_file = next((repo / ".snakemake/uniformer").glob("params-*.yaml"))  # the --configfile reached training
    assert yaml.safe_load(params_file.read_text())["train"]["imagenet"]["smoke"]["epochs"] == EPOCHS
    _uninterrupted(repo, params_file, "reference", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    _assert_same_run(repo / TRAIN, repo / "reference", EPOCHS)


def test_killed_dvc_repro_resumes_and_a_changed_recipe_trains_afresh(repo):
    params = _merge(yaml.safe_load((repo / "params.yaml").read_text()), SMALL)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "small"], repo)
    dvc = BIN / "dvc"
    saved = _kill_when_first_epoch_is_saved([dvc, "repro", "train_imagenet"], repo, repo / "first.log")
    r = _run([dvc, "repro", "train_imagenet"], repo)
    assert f"resuming after epoch {saved}" in r.stderr + r.stdout, (r.stdout + r.stderr)[-2000:]
    _uninterrupted(repo, repo / "params.yaml", "reference")
    _assert_same_run(repo / TRAIN, repo / "reference", EPOCHS)

    r = _run([dvc, "exp", "run", "train_imagenet", "-S", "train.imagenet.smoke.epochs=2"], repo)
    assert "starting afresh" in r.stderr + r.stdout, (r.stdout + r.stderr)[-2000:]
    m = yaml.safe_load((repo / TRAIN / "metrics.json").read_text())
    assert m["epochs"] == 2 and not m["resumed"] and len(m["history"]) == 2
