"""The workflow definitions: Snakemake DAG and SLURM profile, DVC stages and an experiment with a changed knob.

Running the whole smoke pipeline is CI's job (.ci/run); here only what is cheap: dry runs, and DVC's data
stage in a temporary copy of the repository.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(cmd, cwd=ROOT, env_extra=None, **kw):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}:{os.environ['PATH']}", **(env_extra or {})}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600, **kw)


def _dry_run(*args, cwd=ROOT):
    r = _run([str(BIN / "snakemake"), *args, "-n", "--forceall"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout + r.stderr


@pytest.mark.parametrize("table, datasets, entries", [
    ("imagenet", ["imagenet"], ["uniformer_xxs.in1k_224"]),
    ("kinetics", ["kinetics400", "kinetics600"], ["uniformer_xxs_video.k400_16f_128", "uniformer_small_video.k600_16x4"]),
    ("something", ["ssv1", "ssv2"], ["uniformer_small_video.ssv2_16f_from_k400"]),
    ("coco", ["coco"], ["mask_rcnn_1x_xxs"]),
    ("ade20k", ["ade20k"], ["fpn_global_small__test_config_g"]),
    ("coco_pose", ["coco_pose"], ["top_down_256x192_global_small"]),
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
    for table in ("imagenet", "kinetics", "something", "coco", "ade20k", "coco_pose"):
        assert f"reports/{table}.md" in out


def _rule_names():
    """Every rule of the workflow, from Snakemake itself (`--list-rules`)."""
    r = _run([str(BIN / "snakemake"), "--list-rules"])
    assert r.returncode == 0, r.stderr[-3000:]
    return set(r.stdout.split())


def test_every_rule_the_slurm_profile_names_exists():
    prof = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.v8+.yaml").read_text())
    named = set(prof["set-resources"]) | set(prof["set-threads"])
    assert named and named <= _rule_names(), named - _rule_names()


def test_slurm_dry_run_shows_gpu_rules_with_partition_gpus_and_threads(tmp_path):
    paper_train = tmp_path / "paper-train.yaml"  # mode train, so that the dry run has a training job
    paper_train.write_text("settings: paper\ntables: {imagenet: {paper: {mode: train}}}\n")
    out = _dry_run("reproduce_table_imagenet", "--workflow-profile", str(ROOT / "workflow/profiles/slurm"),
                   "--configfile", "params.yaml", str(paper_train), "-p")
    jobs = {b.split(":", 1)[0]: b for b in out.split("\nrule ")[1:]}
    for rule, n_gpus, threads in (("train", 8, 80), ("eval", 1, 10), ("profile", 1, 16)):
        assert "slurm_partition=gpu" in jobs[rule] and f"gpu={n_gpus}," in jobs[rule], jobs[rule]
        assert f"threads: {threads}" in jobs[rule], jobs[rule]
    assert "torchrun --standalone --nproc_per_node=8 -m uniformer.cli train imagenet" in jobs["train"]
    assert "slurm_partition=cpu" in jobs["check_data"]


def test_every_rule_declares_resources():
    for smk in (ROOT / "workflow/rules").glob("*.smk"):
        text = smk.read_text()
        for block in text.split("\nrule ")[1:]:
            name = block.split(":")[0]
            if "shell:" in block:
                assert "threads:" in block and "resources:" in block and "runtime" in block, f"{smk.name}:{name}"
                assert '"{params.cmd} > ' in block, f"{smk.name}:{name} must run the command of uniformer.workflow"


def test_committed_dvc_yaml_is_the_generated_one():
    """dvc.yaml is generated from the table registry; editing one without the other fails here."""
    from uniformer.tables.spec import TABLES
    from uniformer.workflow import dvc_yaml

    assert (ROOT / "dvc.yaml").read_text() == dvc_yaml(), "regenerate: uniformer workflow dvc > dvc.yaml"
    stages = yaml.safe_load(dvc_yaml())["stages"]
    assert set(stages) == {f"{s}_{t}" for s in ("data", "train", "eval", "profile", "report") for t in TABLES}
    for name, st in stages.items():
        step, table = name.split("_", 1)
        assert st["cmd"] == f"uniformer stage {step} {table}", name
    assert "analytics = false" in (ROOT / ".dvc/config").read_text()


def _params_file_of(*overrides):
    """The merged-config file Snakemake writes for params.yaml + these overrides (merged as Snakemake does)."""
    from uniformer.config import config_hash

    def merge(base, over):
        for k, v in over.items():
            base[k] = merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return base

    config = yaml.safe_load((ROOT / "params.yaml").read_text())
    for over in overrides:
        config = merge(config, over)
    path = ROOT / ".snakemake/uniformer" / f"params-{config_hash(config)}.yaml"
    assert path.is_file(), path
    return path


def _snakemake_commands(target, *args):
    """{command line (program as `uniformer` / `torchrun`)} of every job of a forced dry run."""
    import shlex

    out = _dry_run(target, "-p", *args)
    cmds = []
    for line in out.splitlines():
        if line.startswith("Shell command: ") and line != "Shell command: None":  # None: target rules
            argv = shlex.split(line[len("Shell command: "):].split(" > ")[0])
            cmds.append(tuple([Path(argv[0]).name] + argv[1:]))
    return cmds


@pytest.mark.parametrize("settings", ["smoke", "paper"])
def test_dvc_stages_run_exactly_what_snakemake_runs(settings, tmp_path, monkeypatch, capsys):
    """`uniformer stage <step> <table>` (each DVC stage) runs the same command lines as Snakemake's jobs."""
    import shlex

    from uniformer.cli import main
    from uniformer.tables.spec import TABLES

    args = ["--config", f"settings={settings}"]
    if settings == "paper":  # ImageNet in train mode (the torchrun launcher); the others on official files
        tables = yaml.safe_load((ROOT / "params.yaml").read_text())["tables"]
        ckpts = {t: {"paper": {"checkpoints": {e: str(tmp_path / Path(f).name)
                                               for e, f in tables[t]["paper"]["checkpoints"].items()}}}
                 for t in ("kinetics", "something", "coco", "ade20k", "coco_pose")}
        for t in ckpts.values():
            for f in t["paper"]["checkpoints"].values():
                Path(f).touch()
        over = tmp_path / "paper.yaml"
        over.write_text(yaml.safe_dump({"tables": {"imagenet": {"paper": {"mode": "train"}}, **ckpts}}))
        args = ["--configfile", "params.yaml", str(over)] + args
    smk = _snakemake_commands("reproduce_all", *args)
    over = yaml.safe_load(over.read_text()) if settings == "paper" else {}
    env = {"UNIFORMER_PARAMS": str(_params_file_of(over, {"settings": settings}))}  # what Snakemake hands its jobs
    monkeypatch.setenv("UNIFORMER_PARAMS", env["UNIFORMER_PARAMS"])
    dvc = []
    for table in sorted(TABLES):
        for step in ("data", "train", "eval", "profile", "report"):
            assert main(["stage", step, table, "--profile", settings, "--dry-run"]) == 0
            dvc += [tuple(shlex.split(line)) for line in capsys.readouterr().out.splitlines()]
    assert sorted(dvc) == sorted(smk)
    assert any(c[1:3] == ("train", "imagenet") for c in dvc) == (settings == "smoke")
    if settings == "paper":
        assert any(c[0] == "torchrun" for c in dvc)


def test_snakemake_hands_its_merged_config_to_the_commands(tmp_path):
    """--configfile / --config reach the commands: the file named by $UNIFORMER_PARAMS is the merged config."""
    over = tmp_path / "over.yaml"
    over.write_text("train: {imagenet: {smoke: {epochs: 7}}}\n")
    _dry_run("reproduce_table_imagenet", "--configfile", "params.yaml", str(over))
    merged = yaml.safe_load(_params_file_of(yaml.safe_load(over.read_text())).read_text())
    assert merged["train"]["imagenet"]["smoke"]["epochs"] == 7
    assert merged["train"]["imagenet"]["smoke"]["batch_size"] == 32  # the rest of params.yaml is still there


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


def test_ci_matrix_names_published_entries_and_keeps_every_gated_timing():
    """.ci/smoke-matrix.yaml only narrows what CI trains and profiles: every name in it is a published entry or
    model of its table, and the entries it profiles still include every timing the committed baseline holds."""
    from uniformer.profiling.command import select_entries
    from uniformer.tables.spec import get_table

    matrix = yaml.safe_load((ROOT / ".ci/smoke-matrix.yaml").read_text())["tables"]
    for table, settings in matrix.items():
        spec, smoke = get_table(table), settings["smoke"]
        profiled = {e.name for e in select_entries(spec.entries(), smoke.get("profile_models"))}
        assert all(any(t in (e.model, e.name) for e in spec.entries()) for t in smoke.get("train", [])), table
        base = json.loads((ROOT / f"reports/baselines/{table}_smoke.json").read_text())
        gated = {e for e, frac in base["efficiency"].items() if frac is not None}  # null: not timed, not held
        assert gated <= profiled, (table, gated - profiled)
