"""The regression gate can fail: on a slower entry, a real accuracy drop, a chance-level model, a missing entry and
a stale result — and passes a re-run that differs by sampling noise only."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from uniformer.tables.gate import compare, min_correct, snapshot
from uniformer.tables.spec import get_table
from uniformer.tasks import tables

ROOT = Path(__file__).resolve().parent.parent
SMOKE_GATE = {"alpha": 0.01, "efficiency_drop": 0.35, "machine_drop": 0.4}
XXS = "uniformer_xxs.in1k_224"


def _acc(top1, samples=100, classes=10, skipped=0):
    return {"top1": top1, "samples": samples, "classes": classes, "skipped_samples": skipped}


BASE = {"accuracy": {XXS: _acc(83.0)}, "efficiency": {"a": 0.40, "b": 0.20, "c": None}}


def _failed(rows):
    return [r[1] for r in rows if r[-1].startswith("FAIL")]


def test_noise_passes_a_real_drop_fails():
    ok, rows = compare({"accuracy": {XXS: _acc(78.0)}, "efficiency": {"a": 0.30, "b": 0.21}}, BASE, SMOKE_GATE)
    assert ok, rows  # 78/100 is within the 1% quantile of Binomial(100, 0.83); 25% slower is within 35%
    ok, rows = compare({"accuracy": {XXS: _acc(70.0)}, "efficiency": {"a": 0.40, "b": 0.20}}, BASE, SMOKE_GATE)
    assert not ok and _failed(rows) == [XXS]  # ImageNet smoke 83 -> 70


def test_one_entry_twice_as_slow_fails_with_its_name():
    ok, rows = compare({"accuracy": {XXS: _acc(83.0)}, "efficiency": {"a": 0.40, "b": 0.10}}, BASE, SMOKE_GATE)
    assert not ok and _failed(rows) == ["b"]


# The CI runner's measured ratios (2-core Intel vs the AMD EPYC baseline): every entry shifts, by -1% to -38%.
CI_SHIFT = [0.99, 0.89, 1.01, 1.04, 0.83, 0.69, 0.62, 0.85, 0.87, 0.78]
MANY = {"accuracy": {}, "efficiency": {f"m{i}": 0.5 for i in range(len(CI_SHIFT))}}


def _many(ratios):
    return {"accuracy": {}, "efficiency": {f"m{i}": 0.5 * r for i, r in enumerate(ratios)}}


def test_another_machine_passes_a_slow_entry_or_a_slow_majority_fails():
    ok, rows = compare(_many(CI_SHIFT), MANY, SMOKE_GATE)
    assert ok, rows
    twice_as_slow = [r / 2 if i in (0, 6) else r for i, r in enumerate(CI_SHIFT)]  # the fastest and the slowest
    ok, rows = compare(_many(twice_as_slow), MANY, SMOKE_GATE)
    assert not ok and _failed(rows) == ["m0", "m6"]
    light_twice_as_slow = [r / 2 if i >= 4 else r for i, r in enumerate(CI_SHIFT)]  # 6 of 10 entries
    ok, rows = compare(_many(light_twice_as_slow), MANY, SMOKE_GATE)
    assert not ok and _failed(rows) == ["median shift of 10 entries"]
    ok, rows = compare(_many([r / 1.8 for r in CI_SHIFT]), MANY, SMOKE_GATE)  # everything 1.8x slower
    assert not ok and _failed(rows) == ["median shift of 10 entries"]


@pytest.mark.parametrize("current, why", [
    ({"accuracy": {}, "efficiency": {"a": 0.4, "b": 0.2}}, XXS),  # the evaluated entry is missing
    ({"accuracy": {XXS: _acc(83.0)}, "efficiency": {"a": 0.4}}, "b"),  # a profiled entry is missing
    ({"accuracy": {XXS: _acc(83.0)}, "efficiency": {"a": 0.4, "b": None}}, "b"),  # skipped / failed timing
    ({"accuracy": {XXS: _acc(83.0, skipped=1)}, "efficiency": {"a": 0.4, "b": 0.2}}, XXS),  # a skipped sample
    ({"accuracy": {XXS: _acc(83.0, samples=90)}, "efficiency": {"a": 0.4, "b": 0.2}}, XXS),  # fewer samples
])
def test_missing_skipped_or_changed_entries_fail(current, why):
    ok, rows = compare(current, BASE, SMOKE_GATE)
    assert not ok and _failed(rows) == [why]


def test_a_stale_result_fails():
    current = {"accuracy": {XXS: _acc(83.0)}, "efficiency": {"a": 0.4, "b": 0.2}}
    ok, rows = compare(current, BASE, SMOKE_GATE, stale={"results/eval/x/metrics.json": "made by other code"})
    assert not ok and _failed(rows) == ["results/eval/x/metrics.json"]


def test_the_bound_never_admits_chance():
    # a baseline at chance (4 classes, 32 clips, 28.1%) can't be met by anything a chance-level model reaches
    need, bound, chance = min_correct(32, 28.125, 4, 0.01)
    assert bound < chance == need and 1 - __import__("scipy").stats.binom.cdf(need - 1, 32, 0.25) <= 0.01


@pytest.mark.parametrize("table", list(tables()))
def test_committed_baselines_pass_themselves_and_fail_a_constant_predictor(table):
    """Each committed smoke baseline is above chance (else no model could pass it), and a model predicting one
    class for every sample (top-1 = 1/classes on these balanced sets; mIoU / AP: a model that has learnt
    nothing, about 0) fails it."""
    base = json.loads((ROOT / f"reports/baselines/{table}_smoke.json").read_text())
    tol = yaml.safe_load((ROOT / "params.yaml").read_text())["tables"][table]["smoke"]["gate"]
    assert base["accuracy"], f"{table}: the baseline gates no accuracy"
    ok, rows = compare(base, base, tol)
    assert ok, f"{table}: the baseline does not pass itself (at chance?): {rows}"
    constant = {**base, "accuracy": {e: {**a, "top1": 100.0 / a["classes"]} if "classes" in a else {**a, "value": 1.0}
                                     for e, a in base["accuracy"].items()}}
    ok, rows = compare(constant, base, tol)
    assert not ok and set(_failed(rows)) == set(base["accuracy"])


DENSE_GATE = {"metric_drop": 10.0, "floor": 50.0, "efficiency_drop": 0.35, "machine_drop": 0.4}


def _miou(value, samples=16, skipped=0):
    return {"metric": "mIoU", "value": value, "samples": samples, "skipped_samples": skipped}


@pytest.mark.parametrize("value, samples, skipped, passes", [
    (58.7, 16, 0, True),   # the baseline itself
    (52.0, 16, 0, True),   # within metric_drop and above the floor
    (49.0, 16, 0, False),  # within metric_drop of 58.7 but below the smoke quality floor (50)
    (None, 16, 0, False),  # not measured with the table's protocol
    (58.7, 15, 0, False),  # another evaluation set
    (58.7, 16, 1, False),  # a sample skipped
])
def test_dense_metric_bound(value, samples, skipped, passes):
    base = {"accuracy": {"fpn_x": _miou(58.7)}, "efficiency": {}}
    ok, rows = compare({"accuracy": {"fpn_x": _miou(value, samples, skipped)}, "efficiency": {}}, base, DENSE_GATE)
    assert ok is passes, rows
    ok, _ = compare(base, {"accuracy": {"fpn_x": _miou(70.0)}, "efficiency": {}}, DENSE_GATE)
    assert not ok  # 58.7 is more than 10 points below a 70.0 baseline


def test_snapshot_of_a_dense_table_tracks_its_metric():
    results = {"eval": {"fpn_x": {"mIoU": 58.7, "samples": 16, "skipped_samples": 0, "num_classes": 8}},
               "profile": {}}
    assert snapshot(results, "mIoU")["accuracy"] == {"fpn_x": _miou(58.7)}


def test_coco_gate_holds_box_and_mask_ap50_each():
    """The COCO smoke bar is box AP50 and mask AP50 >= 30: either one falling below fails, by name."""
    spec = get_table("coco")
    ev = {"box_ap": 40.0, "box_ap50": 70.0, "mask_ap50": 66.0, "samples": 24, "skipped_samples": 0}
    results = {"eval": {"mask_rcnn_1x_xxs": ev}, "profile": {}}
    base = snapshot(results, spec.gate_metrics)
    assert set(base["accuracy"]) == {"mask_rcnn_1x_xxs box_ap50", "mask_rcnn_1x_xxs mask_ap50"}
    tol = {"metric_drop": 10.0, "floor": 30.0, "efficiency_drop": 0.35, "machine_drop": 0.4}
    assert compare(base, base, tol)[0]
    bad = snapshot({"eval": {"mask_rcnn_1x_xxs": {**ev, "mask_ap50": 25.0}}, "profile": {}}, spec.gate_metrics)
    ok, rows = compare(bad, base, tol)
    assert not ok and [r[1] for r in rows if r[-1] != "ok"] == ["mask_rcnn_1x_xxs mask_ap50"]


def test_ade20k_gate_holds_single_scale_and_ms_flip_miou_each():
    """The smoke ADE20K bar (mIoU >= 50) holds both tests of the evaluation: a failing MS+flip fails, by name."""
    spec = get_table("ade20k")
    ev = {"mIoU": 58.7, "mIoU_ms": 61.2, "samples": 16, "skipped_samples": 0}
    base = snapshot({"eval": {"fpn_x": ev}, "profile": {}}, spec.gate_metrics)
    assert set(base["accuracy"]) == {"fpn_x mIoU", "fpn_x mIoU_ms"}
    tol = {"metric_drop": 10.0, "floor": 50.0, "efficiency_drop": 0.35, "machine_drop": 0.4}
    assert compare(base, base, tol)[0]
    bad = snapshot({"eval": {"fpn_x": {**ev, "mIoU_ms": 45.0}}, "profile": {}}, spec.gate_metrics)
    ok, rows = compare(bad, base, tol)
    assert not ok and [r[1] for r in rows if r[-1] != "ok"] == ["fpn_x mIoU_ms"]


def _write_results(root: Path, top1: float, frac: float, stamp=None):
    spec = get_table("imagenet")
    rows = [{"entry": e.name, "params_m": float(e.row["params_m"]), "gflops": float(e.row["gflops"]),
             "fp32_img_s": 10.0, "fp32_gemm_frac": frac} for e in spec.entries()]
    p = spec.profile_json("smoke", root)
    p.parent.mkdir(parents=True, exist_ok=True)
    from uniformer.config import load_params
    from uniformer.provenance import stamp as make_stamp

    params = load_params(ROOT / "params.yaml")
    p.write_text(json.dumps({"rows": rows, "machine": {"cpu": "test", "gemm": {"fp32": {"gflops_per_s": 1.0}}},
                             "provenance": make_stamp("profile", params, "smoke")}))
    d = spec.eval_dir(XXS, "smoke", root)
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps({
        "top1": top1, "top5": 99.0, "samples": 100, "num_classes": 10, "classes_in_val": 10, "skipped_samples": 0,
        "dataset": "imagenet", "data_source": "synthetic", "provenance": stamp or make_stamp(
            "eval", params, "smoke", "imagenet")}))
    return spec


def test_check_cli_update_gate_and_stale(tmp_path):
    _write_results(tmp_path, 83.0, 0.4)
    baseline = tmp_path / "base.json"
    run = lambda *a: subprocess.run([sys.executable, "-m", "uniformer.cli", "check", "imagenet", "--results",  # noqa
                                     str(tmp_path), "--baseline", str(baseline), *a], capture_output=True, text=True,
                                    cwd=ROOT)
    assert run().returncode == 2  # no baseline yet: deliberate --update-baseline required
    assert run("--update-baseline").returncode == 0
    assert json.loads(baseline.read_text())["accuracy"][XXS]["samples"] == 100
    r = run()
    assert r.returncode == 0 and "regression gate passed" in r.stdout, r.stdout + r.stderr
    _write_results(tmp_path, 70.0, 0.4)  # a degraded model
    r = run()
    assert r.returncode == 1 and "FAILED" in r.stdout
    _write_results(tmp_path, 83.0, 0.4, stamp={"stage": "eval", "code": "0" * 12, "params": "0" * 12})
    r = run()
    assert r.returncode == 1 and "stale result" in r.stdout and "made by other code" in r.stdout


def test_snapshot_counts_a_shared_timing_once(tmp_path):
    results = {"eval": {}, "profile": {
        "s.k400_16x4": {"fp32_gemm_frac": 0.5}, "s.k600_16x4": {"fp32_gemm_frac": 0.5,
                                                               "timing_shared_with": "s.k400_16x4"}}}
    assert snapshot(results)["efficiency"] == {"s.k400_16x4": 0.5}
