"""Profiling: GEMM rate, FLOP handle, BN folding, precision rewrites, report table, OOM back-off.

Fast unit tests only (tiny resolutions, fabricated results); the full report run is not a test.
"""
import time

import pytest
import timm
import torch

import uniformer.models  # noqa: F401  (registers the models)
from uniformer.models import set_fused_attn
from uniformer.profiling.flops import flop_analysis
from uniformer.profiling.machine import gemm_rate, host_info
from uniformer.profiling.optimize import fold_batchnorm, optimize_for_inference
from uniformer.profiling.report import build_rows, render_csv, render_markdown, verdict
from uniformer.profiling.speed import PeakMemory, fit_batch, is_oom, run_with_backoff, time_calls
from uniformer.tasks import get_task

IMAGE_TASK = get_task("image_classification")

SIZE = 64


def _randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics/affine (fresh BN is the identity map, which would make folding trivially right)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.02 * torch.randn(n, generator=g))
    return model.eval()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return _randomize_bn(timm.create_model("uniformer_small", img_size=SIZE))


@pytest.fixture(scope="module")
def xxs():
    torch.manual_seed(0)
    return _randomize_bn(timm.create_model("uniformer_xxs", img_size=SIZE))


def _images(n=4, size=SIZE):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_gemm_rate_positive():
    for p in ("fp32", "bf16"):
        r = gemm_rate(p, n=128, repeats=2, max_seconds=0.5)
        assert r["gflops_per_s"] > 0 and r["n"] <= 128 and r["op"] in ("mm", "linear")
    assert host_info()["cpu"]


@pytest.mark.parametrize("name", ["uniformer_small", "uniformer_xxs"])
def test_sdpa_handle_counts_like_explicit_matmuls(name):
    model = timm.create_model(name, img_size=SIZE).eval()
    x = _images(1)
    counts = {}
    for fused in (True, False):
        set_fused_attn(model, fused)
        with torch.no_grad():
            counts[fused] = flop_analysis(model, x).by_operator()
    assert counts[True]["matmul"] == counts[False]["matmul"] > 0
    assert sum(counts[True].values()) == sum(counts[False].values())


@pytest.mark.parametrize("fixture", ["small", "xxs"])
def test_fold_batchnorm_exact(fixture, request):
    model = request.getfixturevalue(fixture)
    x = _images()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original untouched
    with torch.inference_mode():
        ref, out = model(x), folded(x)
    assert torch.allclose(out, ref, atol=1e-5, rtol=0), (out - ref).abs().max()


def test_fold_batchnorm_token_labelling_heads():
    """The final BN is folded into both the class head and the token-labelling aux head."""
    model = _randomize_bn(timm.create_model("uniformer_small_tl", img_size=SIZE, depth=(1, 1, 1, 1)))
    x = _images(2)
    with torch.inference_mode():
        assert torch.allclose(fold_batchnorm(model)(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cast_weights", [True, False])
def test_optimize_for_inference_bf16_top1(xxs, cast_weights):
    x = _images(4)
    om = optimize_for_inference(xxs, "bf16", channels_last=True, cast_weights=cast_weights)
    with torch.inference_mode():
        ref, out = xxs(x), om(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.75
    assert (out - ref).abs().max() < 0.1


def test_optimize_for_inference_fp32_matches(small):
    x = _images(2)
    om = optimize_for_inference(small, "fp32", channels_last=True, fold_bn=True, fused_attn=False)
    with torch.inference_mode():
        assert torch.allclose(om(x), small(x), atol=1e-4, rtol=0)
    assert all(m.fused_attn for m in small.modules() if hasattr(m, "fused_attn"))  # original untouched


# --- report table (no timing) ------------------------------------------------------------------
NOTE_L = "published 12.6G FLOPs are wrong per maintainer (GitHub issue #75): checkpointing hid layers"


def _timing(img_s, batch, ms):
    t = {"batch_size": batch, "times": [batch / img_s] * 3, "img_per_s": img_s, "ms": ms, "seconds": batch / img_s,
         "truncated": False, "peak_mem_mb": 10.0, "warmup_done": 2, "repeats": 3}
    lat = dict(t, batch_size=1, img_per_s=1000 / ms, times=[ms / 1000] * 3)
    return {"status": "ok", "mode": None, "latency": lat, "throughput": [{"requested": 32, **t}]}


def _result(entry, params_pub, gflops_pub, params, gmacs, notes="", timing=None):
    return {"entry": entry, "label": entry, "model": entry.split(".")[0], "tag": "in1k", "img_size": 224,
            "row": {"params_m": str(params_pub), "gflops": str(gflops_pub), "top1": "80.0", "notes": notes},
            "params": params, "gmacs": gmacs, "timing": timing or {}}


def test_report_rows_columns_and_verdicts():
    gemm = {"fp32": {"gflops_per_s": 100.0, "n": 2048}, "bf16": {"gflops_per_s": 400.0, "n": 2048}}
    results = [
        _result("a.in1k", 22, 3.6, 21.5e6, 3.64, timing={"fp32": _timing(10.0, 32, 120.0),
                                                          "bf16": {"status": "skipped", "reason": "est. 9 s/img"}}),
        _result("large.in1k", 100, 12.6, 100.1e6, 19.75, notes=NOTE_L, timing={"fp32": _timing(1.0, 8, 1100.0)}),
        _result("large.in1k_384", 100, 39.2, 100.1e6, 62.88, notes=NOTE_L),
        _result("odd.in1k", 10, 1.0, 10e6, 2.0, notes="no explanation here"),
    ]
    rows, notes = build_rows(IMAGE_TASK, results, ["fp32", "bf16"], gemm, tol_pct=3.5)
    assert [r["verdict"] for r in rows] == ["ok", "published figure wrong (see note 1)",
                                           "published figure wrong (see note 1)", "GFLOPs mismatch (unexplained)"]
    assert notes == [NOTE_L] and rows[1]["note"] == rows[2]["note"] == 1 and rows[0]["note"] is None
    a = rows[0]
    assert a["gflops_delta_pct"] == pytest.approx(100 * (3.64 - 3.6) / 3.6)
    assert a["params_delta_pct"] == pytest.approx(100 * (21.5 - 22) / 22)
    assert a["fp32_img_s"] == 10.0 and a["fp32_batch"] == 32 and a["fp32_latency_ms"] == 120.0
    assert a["fp32_gflops_s"] == pytest.approx(2 * 3.64 * 10.0)  # FLOP = 2 x multiply-adds
    assert a["fp32_gemm_frac"] == pytest.approx(2 * 3.64 * 10.0 / 100.0)
    assert a["bf16_status"].startswith("skipped") and a["bf16_img_s"] is None
    csv_text = render_csv(rows)
    header = csv_text.splitlines()[0].split(",")
    for col in ("entry", "params_m_published", "params_m", "params_delta_pct", "gflops_published", "gflops",
                "gflops_delta_pct", "verdict", "fp32_img_s", "fp32_batch", "fp32_latency_ms", "fp32_gemm_frac",
                "bf16_img_s", "bf16_status"):
        assert col in header
    assert len(csv_text.splitlines()) == 1 + len(results)
    md = render_markdown(IMAGE_TASK, rows, notes, ["fp32", "bf16"], {"Machine": "test cpu"}, "Title")
    assert "| Machine | test cpu |" in md and "1. " + NOTE_L in md
    assert "10 (b32)" in md and "skipped" in md and "72.8 (73%)" in md
    assert md.count("\n| 1 |") == 1 and "\n| 4 |" in md


def test_verdict_tolerance():
    assert verdict(1.0, -3.4, "", 3.5)[0] == "ok"
    assert verdict(1.0, 3.6, "", 3.5)[0] == "GFLOPs mismatch (unexplained)"
    assert verdict(5.0, 0.0, "", 3.5)[0] == "params mismatch (unexplained)"
    assert verdict(0.0, 60.0, "FLOPs wrong", 3.5, 2) == ("published figure wrong (see note 2)", True)


# --- timing helpers -------------------------------------------------------------------------------
def test_oom_backoff_halves_batch():
    calls = []

    def fn(bs):
        calls.append(bs)
        if bs > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return bs * 10

    assert run_with_backoff(fn, 64) == (80, 8)
    assert calls == [64, 32, 16, 8]
    cpu_oom = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes")
    assert is_oom(cpu_oom) and not is_oom(RuntimeError("shape mismatch"))


def test_oom_backoff_gives_up_and_passes_other_errors():
    def always_oom(bs):
        raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        run_with_backoff(always_oom, 4)

    def broken(bs):
        raise ValueError("not an OOM")

    with pytest.raises(ValueError):
        run_with_backoff(broken, 4)


def test_time_calls_deadline_keeps_one_warmup_and_one_timing():
    n = []
    t = time_calls(lambda: n.append(1), batch_size=2, warmup=5, repeats=5, deadline=time.perf_counter() - 1)
    assert t.warmup_done == 1 and len(t.times) == 1 and t.truncated and len(n) == 2
    t = time_calls(lambda: None, batch_size=2, warmup=2, repeats=3)
    assert t.warmup_done == 2 and len(t.times) == 3 and not t.truncated and t.img_per_s > 0


def test_fit_batch():
    assert fit_batch(32, 1, s_per_img=0.01, seconds_left=100, calls=5) == 32
    assert fit_batch(32, 1, s_per_img=0.1, seconds_left=5, calls=5) == 8  # 5 x 8 x 0.1 = 4 s
    assert fit_batch(32, 1, s_per_img=10, seconds_left=5, calls=5) == 1


def test_peak_memory_cpu():
    with PeakMemory("cpu") as mem:
        x = torch.ones(64, 2 ** 20)  # 256 MB
        del x
    assert mem.peak_mb is not None and mem.peak_mb >= 200


class _SleepModel(torch.nn.Module):
    """Costs 5 ms per image: a stand-in for a model in the budget logic."""

    def forward(self, x):
        time.sleep(0.005 * len(x))
        return x.mean((1, 2, 3))


def test_profile_inference_shrinks_batch_to_budget():
    from uniformer.profiling.speed import profile_inference

    r = profile_inference(_SleepModel(), 8, [1, 256], warmup=1, repeats=2, budget_s=0.6)
    (tp,) = r["throughput"]
    assert tp["requested"] == 256 and 1 < tp["batch_size"] < 256  # 3 calls x 256 x 5 ms would be 3.8 s
    assert r["latency"]["batch_size"] == 1 and r["latency"]["ms"] >= 5
    assert tp["img_per_s"] == pytest.approx(200, rel=0.5)



def test_timed_entries_depend_on_max_gflops_not_on_machine_speed():
    """An entry at or below max_gflops is timed even when one call overruns the budget (1 warm-up + 1 timed);
    one above it is skipped however fast the machine: the gate then holds the same entries everywhere."""
    from types import SimpleNamespace

    from uniformer.profiling.command import profile_entry

    task = SimpleNamespace(profile_inputs=lambda e: 8, profile_unit="img")
    cfg = {"max_seconds_per_model": 0.001, "max_gflops": 50, "batch_sizes": [1, 4], "warmup": 2, "repeats": 3,
           "channels_last": False, "compile": False, "fold_bn": False}
    slow = profile_entry(task, None, _SleepModel(), 50.0, ["fp32"], {}, cfg, "cpu")["fp32"]
    assert slow["status"] == "truncated" and slow["latency"]["ms"] >= 5 and len(slow["latency"]["times"]) == 1
    big = profile_entry(task, None, _SleepModel(), 50.1, ["fp32"], {}, {**cfg, "max_seconds_per_model": 600}, "cpu")
    assert big["fp32"]["status"] == "skipped" and "max_gflops 50" in big["fp32"]["reason"]
    unlimited = profile_entry(task, None, _SleepModel(), 1e6, ["fp32"], {}, {**cfg, "max_gflops": None}, "cpu")
    assert unlimited["fp32"]["status"] == "truncated"

def test_select_entries():
    from uniformer.config import ConfigError
    from uniformer.models.catalog import imagenet_entries
    from uniformer.profiling.command import select_entries

    entries = imagenet_entries()
    assert len(select_entries(entries, None)) == 22
    assert [e.name for e in select_entries(entries, ["uniformer_large_ls_tl"])] == [
        "uniformer_large_ls_tl.in1k", "uniformer_large_ls_tl.in1k_384"]
    assert [e.img_size for e in select_entries(entries, ["uniformer_xxs.in1k_160"])] == [160]
    with pytest.raises(ConfigError):
        select_entries(entries, ["resnet50"])
