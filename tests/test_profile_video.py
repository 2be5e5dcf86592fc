"""`uniformer profile` on the video entries: shape-generic inputs, per-view x views rows, video config, a tiny run.

Unit tests use fabricated results; the one real run (marked e2e) profiles one tiny light model, twice
over (a fabricated Kinetics-600 twin), to exercise the measurement sharing, in well under 30 s.
"""
import argparse
import dataclasses
import json

import pytest
import timm
import torch

import uniformer.models  # noqa: F401  (registers the models)
from uniformer.config import ConfigError
from uniformer.profiling.flops import count_flops, head_gmacs
from uniformer.profiling.report import build_rows, render_csv, render_markdown, verdict
from uniformer.profiling.speed import input_shape, random_images
from uniformer.tasks import get_task

VIDEO_TASK = get_task("video_classification")

TINY = "uniformer_xxs_ls_video.k400_4f_128"  # 1 GFLOP per view, the cheapest published video entry


def test_random_inputs_take_an_image_side_or_a_shape():
    assert random_images(2, 8).shape == (2, 3, 8, 8)
    assert random_images(2, (3, 4, 8, 8)).shape == (2, 3, 4, 8, 8)
    assert input_shape(8) == (3, 8, 8) and input_shape([3, 4, 8, 8]) == (3, 4, 8, 8)
    assert torch.equal(random_images(1, 8), random_images(1, (3, 8, 8)))  # same draw either way


def test_head_gmacs_is_the_only_difference_between_heads():
    """The FLOPs shared between entries of one network are corrected by exactly the head difference."""
    shape = (3, 4, 64, 64)
    counts = {}
    for nc in (400, 174):
        m = timm.create_model("uniformer_xxs_ls_video", num_classes=nc).eval()
        counts[nc] = (count_flops(m, shape)["gflops"], head_gmacs(m))
    assert counts[400][1] == pytest.approx(448 * 400 / 1e9)
    assert counts[400][0] - counts[400][1] + counts[174][1] == pytest.approx(counts[174][0], rel=1e-12)


def _video_result(entry, per_view_pub, total_pub, views, gmacs, shared_with=None, timing=None):
    r = {"entry": entry, "label": entry, "model": entry.split(".")[0], "tag": entry.split(".")[1],
         "task": "kinetics400", "input_size": (3, 16, 224, 224), "views": views,
         "row": {"params_m": "", "gflops": str(total_pub), "gflops_per_view": str(per_view_pub), "top1": "80.8",
                 "notes": ""},
         "params": 21.4e6, "gmacs": gmacs, "timing": timing or {}}
    if shared_with:
        r["timing_shared_with"] = shared_with
    return r


def _timing(img_s, batch, ms):
    t = {"batch_size": batch, "img_per_s": img_s, "ms": ms, "times": [1.0, 1.0]}
    return {"status": "ok", "mode": None, "latency": {**t, "batch_size": 1}, "throughput": [t]}


def test_video_rows_per_view_times_views():
    gemm = {"fp32": {"gflops_per_s": 100.0, "n": 2048}}
    results = [_video_result("uniformer_small_video.k400_16x4", 41.75, 167, 4, 41.757, timing={"fp32": _timing(
                   0.5, 1, 2000.0)}),
               _video_result("uniformer_small_video.k600_16x4", 41.75, 167, 4, 41.757,
                             shared_with="uniformer_small_video.k400_16x4")]
    rows, notes = build_rows(VIDEO_TASK, results, ["fp32"], gemm, tol_pct=3.5)
    a, b = rows
    assert a["verdict"] == b["verdict"] == "ok" and notes == []
    assert (a["frames"], a["resolution"], a["views"], a["task"]) == (16, 224, 4, "kinetics400")
    assert a["gflops"] == 41.757 and a["gflops_published"] == 41.75
    assert a["gflops_total"] == pytest.approx(4 * 41.757) and a["gflops_total_published"] == 167
    assert a["gflops_total_delta_pct"] == pytest.approx(100 * (4 * 41.757 - 167) / 167)
    assert a["params_m_published"] is None and a["params_m"] == pytest.approx(21.4)
    assert a["fp32_img_s"] == 0.5 and a["fp32_gflops_s"] == pytest.approx(2 * 41.757 * 0.5)  # per-view FLOPs x clips/s
    assert a["timing_shared_with"] is None and b["timing_shared_with"] == "uniformer_small_video.k400_16x4"
    header = render_csv(rows).splitlines()[0].split(",")
    for col in ("entry", "frames", "views", "gflops", "gflops_published", "gflops_total", "gflops_total_published",
                "gflops_total_delta_pct", "verdict", "timing_shared_with", "fp32_img_s", "fp32_gemm_frac"):
        assert col in header
    md = render_markdown(VIDEO_TASK, rows, notes, ["fp32"], {"Machine": "test cpu"}, "Video")
    assert "GFLOPs per view (pub / ours / Δ)" in md and "GFLOPs total (pub / ours × views / Δ)" in md
    assert "fp32 clips/s (batch)" in md and "img/s" not in md
    assert "| 16 × 224 |" in md and "41.75 / 41.76 / +0.0% | 4 | 167 / 167.03 / +0.0%" in md
    assert "as `uniformer_small_video.k400_16x4`" in md


def test_video_verdict_flags_a_total_that_does_not_follow():
    """Per view agrees, but per view x views is not the published total: flagged."""
    (row,), _ = build_rows(VIDEO_TASK, [_video_result("m.k400_8x8", 17.5, 100, 4, 17.5)], [], {}, tol_pct=3.5)
    assert row["gflops_delta_pct"] == 0 and row["gflops_total"] == 70.0
    assert row["verdict"] == "total GFLOPs mismatch (unexplained)"
    (row,), _ = build_rows(VIDEO_TASK, [_video_result("m.k400_8x8", 17.5, 70, 4, 20.0)], [], {}, tol_pct=3.5)
    assert row["verdict"] == "GFLOPs mismatch (unexplained); total GFLOPs mismatch (unexplained)"
    # a note that explains the FLOPs is cited once, for both checks
    assert verdict(None, 10.0, "FLOPs wrong", 3.5, 1, total_delta=10.0, params_published=False) == (
        "published figure wrong (see note 1)", True)
    assert verdict(None, 1.0, "", 3.5)[0] == "no published figure"  # images: params are published


# --- config ---------------------------------------------------------------------------------------
PARAMS = """settings: smoke
profiling:
  smoke:
    batch_sizes: [1, 32]
    warmup: 2
    repeats: 3
    precisions: [fp32, bf16]
    half_mode: auto
    channels_last: false
    fold_bn: false
    compile: false
    train: false
    threads: 0
    max_seconds_per_model: 10
    gemm_seconds: 6
    flops_tolerance_pct: 3.5
"""
VIDEO = """    video:
      precisions: [fp32]
      batch_sizes: [1]
      max_seconds_per_model: 8
"""


def _resolve(tmp_path, monkeypatch, params, *argv):
    from uniformer.profiling.command import add_arguments, resolve_config

    (tmp_path / "params.yaml").write_text(params)
    monkeypatch.setenv("UNIFORMER_PARAMS", str(tmp_path / "params.yaml"))
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(argv)
    args.task = args.what or args.task
    return resolve_config(args)[1]


def test_video_config_overrides(tmp_path, monkeypatch):
    # no video sub-dict: video tasks use the image settings; --set video.KEY still reaches them
    cfg = _resolve(tmp_path, monkeypatch, PARAMS, "--task", "kinetics")
    assert cfg["precisions"] == ["fp32", "bf16"] and cfg["video_overrides"] == []
    cfg = _resolve(tmp_path, monkeypatch, PARAMS, "something", "--set", "video.precisions=[fp32]", "warmup=1")
    assert cfg["precisions"] == ["fp32"] and cfg["warmup"] == 1 and cfg["video_overrides"] == ["precisions"]
    # with the sub-dict: it wins for video tasks only; explicit flags win over it
    cfg = _resolve(tmp_path, monkeypatch, PARAMS + VIDEO, "--task", "ssv2")
    assert (cfg["precisions"], cfg["batch_sizes"], cfg["max_seconds_per_model"]) == (["fp32"], [1], 8)
    image = _resolve(tmp_path, monkeypatch, PARAMS + VIDEO, "--task", "imagenet", "--set", "video.batch_sizes=[2]")
    assert image["batch_sizes"] == [1, 32] and "video" not in image and "video_overrides" not in image
    cfg = _resolve(tmp_path, monkeypatch, PARAMS + VIDEO, "--task", "kinetics", "--batch-sizes", "1", "4",
                   "--set", "video.max_seconds_per_model=3")
    assert cfg["batch_sizes"] == [1, 4] and cfg["max_seconds_per_model"] == 3
    for bad in (["--set", "video.nope=1"], ["--channels-last"], ["--set", "video.fold_bn=true"]):
        with pytest.raises(ConfigError):
            _resolve(tmp_path, monkeypatch, PARAMS + VIDEO, "--task", "kinetics", *bad)
    with pytest.raises(ConfigError):
        _resolve(tmp_path, monkeypatch, PARAMS + "    video: {warmupp: 1}\n", "--task", "kinetics")


def test_video_tasks_select_their_data_sets():
    from uniformer.profiling.command import TARGETS, select_entries
    from uniformer.models.video_catalog import video_entries

    video = {t: v for t, v in TARGETS.items() if v.table.name in ("kinetics", "something")}
    assert set(video) == {"kinetics", "something", "kinetics400", "kinetics600", "ssv1", "ssv2"}
    counts = {t: len([e for d in video[t].datasets for e in video_entries(d)]) for t in video}
    assert counts["kinetics"] == counts["kinetics400"] + counts["kinetics600"]
    assert counts["something"] == counts["ssv1"] + counts["ssv2"] and counts["kinetics"] + counts["something"] == 37
    assert [e.name for e in select_entries(video_entries("kinetics400"), [TINY])] == [TINY]


# --- a real run -----------------------------------------------------------------------------------
@pytest.mark.e2e
def test_profile_video_tiny_run(tmp_path, monkeypatch):
    """`uniformer profile --task kinetics` on the tiny entry and a Kinetics-600 twin that reuses its measurement."""
    import uniformer.models.video_catalog as catalog
    from uniformer.cli import main

    (tiny,) = [e for e in catalog.video_entries("kinetics400") if e.name == TINY]
    twin = dataclasses.replace(tiny, tag="k600_4f_128", num_classes=600, row={**tiny.row, "task": "kinetics600"})
    monkeypatch.setattr(catalog, "video_entries", lambda task=None: {"kinetics400": [tiny], "kinetics600": [twin]}
                        .get(task, []))
    out = tmp_path / "k.json"
    rc = main(["profile", "--task", "kinetics", "--models", "uniformer_xxs_ls_video", "--precision", "fp32",
               "--batch-sizes", "1", "2", "--budget", "2", "--set", "gemm_seconds=0.3", "threads=1", "warmup=1",
               "repeats=2", "--out-dir", str(tmp_path), "--json", str(out), "--no-mlflow", "--no-progress"])
    assert rc == 0
    d = json.loads(out.read_text())
    assert set(d) >= {"profile", "config", "machine", "date", "wall_s", "rows", "notes", "results"}
    a, b = d["rows"]
    assert a["entry"] == TINY and a["verdict"] == "ok" and a["views"] == 1 and a["frames"] == 4
    assert a["gflops"] == pytest.approx(1.0, rel=0.035) and a["gflops_total"] == a["gflops"]
    assert a["fp32_img_s"] > 0 and a["fp32_gemm_frac"] > 0 and a["timing_shared_with"] is None
    assert b["timing_shared_with"] == TINY and b["fp32_img_s"] == a["fp32_img_s"]
    assert b["gflops"] - a["gflops"] == pytest.approx(448 * 200 / 1e9)  # the bigger head, exactly
    assert b["params_m"] - a["params_m"] == pytest.approx(2 * 449 * 200 / 1e6)  # + head_cls (training only)
    assert d["results"][0]["input_size"] == [3, 4, 128, 128]
    md = (tmp_path / "models_kinetics.md").read_text()
    assert "Kinetics-400/600" in md and f"as `{TINY}`" in md
    assert (tmp_path / "models_kinetics.csv").read_text().count("\n") == 3
