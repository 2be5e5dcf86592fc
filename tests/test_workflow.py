"""The workflow definitions: Snakemake DAG and SLURM profile, DVC stages and an experiment with a changed knob.

Running the whole smoke pipeline is CI's job (.ci/run); here only what is cheap: dry runs, and DVC's data
stage in a temporary copy of the repository.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(cmd, cwd=ROOT, **kw):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600, **kw)


def _dry_run(*args, cwd=ROOT):
    r = _run([str(BIN / "snakemake"), *args, "-n", "--forceall"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout + r.stderr


def test_snakemake_dag_of_the_imagenet_table(tmp_path):
    out = _dry_run("reproduce_table_imagenet")
    for rule in ("synth_imagenet", "check_imagenet", "train_imagenet", "eval_imagenet", "profile_imagenet",
                 "report_imagenet"):
        assert rule in out, out


def test_snakemake_slurm_profile_validates(tmp_path):
    out = _dry_run("reproduce_all", "--workflow-profile", str(ROOT / "workflow/profiles/slurm"))
    assert "train_imagenet" in out


def test_every_rule_declares_resources():
    for smk in (ROOT / "workflow/rules").glob("*.smk"):
        text = smk.read_text()
        for block in text.split("\nrule ")[1:]:
            name = block.split(":")[0]
            if "shell:" in block:
                assert "threads:" in block and "resources:" in block and "runtime" in block, f"{smk.name}:{name}"
                assert "{params.exe}" in block or "{params.launch}" in block, f"{smk.name}:{name} must call the CLI"


def test_dvc_stages_match_the_snakemake_paths():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == {"data_imagenet", "train_imagenet", "eval_imagenet", "profile_imagenet", "report_imagenet"}
    for name, st in stages.items():
        assert st["cmd"].lstrip().startswith(("uniformer", "mkdir -p results/data/imagenet && uniformer")), name
    outs = [next(iter(o)) if isinstance(o, dict) else o for st in stages.values() for o in st.get("outs", [])]
    assert "results/profile/imagenet/${profile_name}.json" in outs and "results/eval/imagenet" in outs
    smk = (ROOT / "workflow/rules/profile.smk").read_text()
    assert '"results/profile/imagenet/%s.json" % PROFILE_NAME' in smk
    config = (ROOT / ".dvc/config").read_text()
    assert "analytics = false" in config


@pytest.mark.e2e
def test_dvc_repro_and_experiment_in_a_copy(tmp_path):
    """`dvc repro` of the data stage in a fresh copy, a no-op re-run, then `dvc exp run -S` with a changed knob."""
    repo = tmp_path / "repo"
    r = _run(["git", "ls-files", "-z"])
    for rel in r.stdout.split("\0"):
        if rel:
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        assert _run(cmd, cwd=repo).returncode == 0
    dvc = str(BIN / "dvc")
    r = _run([dvc, "repro", "data_imagenet"], cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (repo / "data/synthetic/imagenet/manifest.json").is_file()
    check = (repo / "results/data/imagenet/smoke.check.txt").read_text()
    assert "no problems" in check.lower() or "ok" in check.lower(), check
    r = _run([dvc, "repro", "data_imagenet"], cwd=repo)
    assert r.returncode == 0 and "didn't change" in r.stdout + r.stderr
    assert _run(["git", "add", "-A"], cwd=repo).returncode == 0
    assert _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock"], cwd=repo).returncode == 0
    r = _run([dvc, "exp", "run", "data_imagenet", "-S", "data.imagenet.smoke.synth.classes=4"], cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    classes = [p for p in (repo / "data/synthetic/imagenet/train").iterdir() if p.is_dir()]
    assert len(classes) == 4
