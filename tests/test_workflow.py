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


@pytest.mark.parametrize("table, datasets, entries", [
    ("imagenet", ["imagenet"], ["uniformer_xxs.in1k_224"]),
    ("kinetics", ["kinetics400", "kinetics600"], ["uniformer_xxs_video.k400_16f_128", "uniformer_small_video.k600_16x4"]),
    ("something", ["ssv1", "ssv2"], ["uniformer_small_video.ssv2_16f_from_k400"]),
])
def test_snakemake_dag_of_each_table(table, datasets, entries):
    out = _dry_run(f"reproduce_table_{table}")
    for rule in ("synth_data", "check_data", "train", "eval", "profile", "report"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, (rule, out[-2000:])
    for d in datasets:
        assert f"results/data/{d}/smoke.check.txt" in out
    for e in entries:
        assert f"results/eval/{table}/{e}/smoke/metrics.json" in out
    assert f"reports/{table}.md" in out and f"results/profile/{table}/smoke.json" in out


def test_reproduce_all_covers_every_table():
    out = _dry_run("reproduce_all")
    for table in ("imagenet", "kinetics", "something"):
        assert f"reports/{table}.md" in out


def test_snakemake_slurm_profile_validates(tmp_path):
    out = _dry_run("reproduce_all", "--workflow-profile", str(ROOT / "workflow/profiles/slurm"))
    assert "rule train:" in out


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
    tables = ("imagenet", "kinetics", "something")
    assert set(stages) == {f"{s}_{t}" for s in ("data", "train", "eval", "profile", "report") for t in tables}
    for name, st in stages.items():
        assert st["cmd"].lstrip().startswith("uniformer"), name
    outs = [next(iter(o)) if isinstance(o, dict) else o for st in stages.values() for o in st.get("outs", [])]
    smk = "".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    assert '"results/profile/{table}/%s.json" % PROFILE_NAME' in smk
    assert '"results/data/{dataset}/%s.check.txt" % PROFILE_NAME' in smk
    for t in tables:
        assert f"results/profile/{t}/${{profile_name}}.json" in outs and f"results/eval/{t}" in outs
    for d in ("imagenet", "kinetics400", "kinetics600", "ssv1", "ssv2"):
        assert f"results/data/{d}/${{profile_name}}.check.txt" in outs
    config = (ROOT / ".dvc/config").read_text()
    assert "analytics = false" in config


def test_stage_plans_are_what_snakemake_runs():
    """`uniformer stage` (DVC) and the Snakefile take their items from the same functions."""
    from uniformer.commands.stage import plan

    train = plan("train", "kinetics", "smoke")
    assert [c[1] for c in train] == ["kinetics400", "kinetics600"]
    ev = plan("eval", "something", "smoke")
    assert ev[0][:4] == ["eval", "ssv2", "--model", "uniformer_small_video.ssv2_16f_from_k400"]
    paper = plan("eval", "kinetics", "paper")
    assert all(c[c.index("--checkpoint") + 1].startswith("checkpoints/") for c in paper) and len(paper) == 6
    data = plan("data", "something", "smoke")
    assert data[0][:3] == ["data", "synth", "ssv1"] and data[1][:3] == ["data", "check", "ssv1"]
    assert "--class-index" in data[1] and "--frame-template" in data[1]


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
