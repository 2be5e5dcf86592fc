#!/usr/bin/env python
"""Inference speed of UniFormer-S / -B: plain eager fp32 vs our fastest fp32 and bf16 paths.

Not a test: prints a table (also written to benchmarks/out/bench_models.{txt,json}).

Paths, per model and batch size (default 224x224, batch 1 and 32):
  baseline  eager, explicit-matmul attention (``set_fused_attn(model, False)``), fp32, NCHW;
  fp32      SDPA + BatchNorm folded, NCHW or channels_last (+ channels_last + torch.compile with --compile);
  bf16      BN folded, bf16 weights or autocast, NCHW or channels_last (+ weights, channels_last, compile).
All paths of a model are timed interleaved (round-robin, ``--repeats`` rounds, median per path), so a
neighbour's load on a shared machine hits every path alike. Each path's batch is shrunk until its
warm-up + rounds fit the ``--budget`` (estimated from one timed image; printed as ``32→8``). The fastest
path per precision (at the largest batch) is checked against the targets. Achieved GFLOP/s =
2 x fvcore multiply-adds x img/s, against GEMM rates measured in the same run (start and end, the faster
kept). Accuracy: max |logit difference| and top-1 agreement with the baseline on ``--check-images``
random images (BatchNorm statistics randomised, so that folding is not trivially exact).

torch.compile is opt-in (--compile): on a 2-core CPU one compilation takes 1.5-3.5 minutes per
(model, precision, batch size), more than the few minutes this script is meant to take.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import timm
import torch

import uniformer.models  # noqa: F401  (registers the models)
from uniformer.profiling.flops import count_flops
from uniformer.profiling.machine import gemm_rate, measure_machine
from uniformer.profiling.optimize import optimize_for_inference
from uniformer.profiling.speed import fit_batch, pick_threads, random_images

# Quoted in the issue for the official implementation (batch 32, 224x224, on the issue author's machine);
# printed for comparison only, not measured here.
OFFICIAL = {"fp32 eager": 12.8, "fp32 compile": 19.7, "bf16 weights eager": 26.7, "bf16 + channels_last": 40.5,
            "bf16 compile": 56.4}
PATHS = {  # name -> (precision, optimize_for_inference kwargs)
    "baseline": ("fp32", dict(fold_bn=False, fused_attn=False)),
    "fp32 sdpa+bnfold": ("fp32", dict()),
    "fp32 sdpa+bnfold+cl": ("fp32", dict(channels_last=True)),
    "bf16 weights+bnfold": ("bf16", dict(cast_weights=True)),
    "bf16 weights+bnfold+cl": ("bf16", dict(cast_weights=True, channels_last=True)),
    "bf16 autocast+bnfold+cl": ("bf16", dict(cast_weights=False, channels_last=True)),
}
TARGETS = {"fp32": "≥1.6× baseline, max|Δ|≤1e-4, ≥60% of fp32 GEMM", "bf16": "≥5× baseline, top-1 agreement ≥99%"}


def randomize_bn(model):
    """Golden-like BatchNorm statistics and affine (a fresh BN is the identity, hiding folding errors)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.02 * torch.randn(n, generator=g))
    return model.eval()


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


@torch.inference_mode()
def interleaved(models, batches, size, rounds):
    """{name: median seconds per call}: one warm-up each, then ``rounds`` round-robin passes over the paths."""
    xs = {name: random_images(b, size) for name, b in batches.items()}
    for name in batches:
        models[name](xs[name])  # warm-up (and compilation for this shape)
    times = {name: [] for name in batches}
    for _ in range(rounds):
        for name in batches:
            times[name].append(timed(lambda: models[name](xs[name]))[1])
    return {name: statistics.median(t) for name, t in times.items()}


@torch.inference_mode()
def logits(model, x):
    """Image by image: a compiled model needs no new batch shape."""
    return torch.cat([model(x[i:i + 1]) for i in range(len(x))])


def bench_model(name, size, batch_sizes, rounds, budget, n_check, compile_):
    torch.manual_seed(0)
    model = randomize_bn(timm.create_model(name, img_size=size))
    gmacs = count_flops(model, (3, size, size))["gflops"]
    paths = dict(PATHS)
    if compile_:
        paths["fp32 sdpa+bnfold+cl+compile"] = ("fp32", dict(channels_last=True, compile=True))
        paths["bf16 weights+bnfold+cl+compile"] = ("bf16", dict(cast_weights=True, channels_last=True, compile=True))
    models = {p: optimize_for_inference(model, prec, **dict(dict(fold_bn=True, fused_attn=True), **kw))
              for p, (prec, kw) in paths.items()}
    one = random_images(1, size)
    with torch.inference_mode():
        for m in models.values():
            m(one)  # first call: allocation, kernel selection (compilation)
        s_per_img = {p: timed(lambda: m(one))[1] for p, m in models.items()}  # to size each path's batch
    speed = {p: {} for p in paths}  # path -> batch used -> img/s
    used = {p: {} for p in paths}  # path -> requested batch -> batch used
    for bs in batch_sizes:
        batches = {p: fit_batch(bs, 1, s_per_img[p], budget, calls=rounds + 1) for p in paths}
        secs = interleaved(models, {p: b for p, b in batches.items() if b not in speed[p]}, size, rounds)
        for p, b in batches.items():
            if p in secs:
                speed[p][b] = b / secs[p]
            used[p][bs] = b
        print(f"  batch {bs}: " + ", ".join(f"{p} {speed[p][batches[p]]:.3g} img/s (b{batches[p]})" for p in paths),
              flush=True)
    # fastest per precision at the largest requested batch, then accuracy of baseline and winners only
    last = batch_sizes[-1]

    def img_s(p, bs):
        return speed[p][used[p][bs]]

    best = {}
    for prec in ("fp32", "bf16"):
        cands = [p for p, (pr, _) in paths.items() if pr == prec and p != "baseline"]
        best[prec] = max(cands, key=lambda p: img_s(p, last))
    check_x = random_images(n_check, size, seed=1)
    ref = logits(models["baseline"], check_x)
    acc = {"baseline": (0.0, 1.0)}
    for p in best.values():
        out = logits(models[p], check_x)
        acc[p] = ((out - ref).abs().max().item(), (out.argmax(1) == ref.argmax(1)).float().mean().item())
    rows = []
    for p, (prec, _) in paths.items():
        for bs in batch_sizes:
            b, v = used[p][bs], img_s(p, bs)
            gf = 2 * gmacs * v
            rows.append({"model": name, "batch": bs, "batch_used": b, "path": p, "precision": prec, "img_s": v,
                         "gflops_s": gf, "speedup": v / img_s("baseline", bs), "best": p == best.get(prec),
                         "max_abs_diff": acc.get(p, (None, None))[0], "top1_agreement": acc.get(p, (None, None))[1]})
    return rows, {"gmacs": gmacs, "best": best}


def verdict(row):
    if row["precision"] == "fp32":
        ok = row["speedup"] >= 1.6 and row["max_abs_diff"] <= 1e-4 and row["gemm_frac"] >= 0.6
    else:
        ok = row["speedup"] >= 5 and row["top1_agreement"] >= 0.99
    return "PASS" if ok else "FAIL"


def fmt_table(rows):
    cols = ["model", "batch", "path", "img/s", "GFLOP/s", "%GEMM", "×base", "max|Δ|", "top-1", "target"]
    lines = []
    for r in rows:
        b = str(r["batch"]) if r["batch_used"] == r["batch"] else f"{r['batch']}→{r['batch_used']}"
        lines.append([r["model"], b, ("★ " if r["best"] else "  ") + r["path"], f"{r['img_s']:.3g}",
                      f"{r['gflops_s']:.3g}", f"{100 * r['gemm_frac']:.0f}%", f"{r['speedup']:.2f}",
                      "" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}",
                      "" if r["top1_agreement"] is None else f"{100 * r['top1_agreement']:.0f}%",
                      r.get("verdict", "")])
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(cols)]
    text = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    text += ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["uniformer_small", "uniformer_base"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--quick", action="store_true", help="2 rounds, 4 s budget, 4 check images")
    p.add_argument("--compile", action="store_true", help="also time torch.compile paths (minutes per graph on CPU)")
    p.add_argument("--repeats", type=int, help="timing rounds (default 3, --quick 2)")
    p.add_argument("--budget", type=float, help="seconds per path and batch size (default 10, --quick 4)")
    p.add_argument("--check-images", type=int, help="images for the accuracy check (default 8, --quick 4)")
    p.add_argument("--threads", type=int, default=0,
                   help="0 = auto: all cores only if >=1.2x faster than 1 thread now")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "out")
    args = p.parse_args(argv)
    rounds = args.repeats or (2 if args.quick else 3)
    budget = args.budget or (4.0 if args.quick else 10.0)
    n_check = args.check_images or (4 if args.quick else 8)
    t_start = time.perf_counter()

    if args.threads:
        torch.set_num_threads(args.threads)
        threads = {"threads": args.threads}
    else:
        probe, xp = timm.create_model("uniformer_small", img_size=96).eval(), random_images(1, 96)
        with torch.inference_mode():
            best, secs = pick_threads(lambda: probe(xp), [1, torch.get_num_threads()])
        threads = {"threads": best, "probe_seconds": {k: round(v, 4) for k, v in secs.items()}}
    machine = measure_machine(("fp32", "bf16"), max_seconds=6.0)
    gemm = {k: v["gflops_per_s"] for k, v in machine["gemm"].items()}
    print(f"threads {threads}; GEMM at start (GFLOP/s): { {k: round(v, 1) for k, v in gemm.items()} }", flush=True)
    all_rows, details = [], {}
    for name in args.models:
        print(f"{name}:", flush=True)
        rows, details[name] = bench_model(name, args.img_size, sorted(args.batch_sizes), rounds, budget, n_check,
                                          args.compile)
        all_rows += rows
    # again at the end, the faster of the two kept: a neighbour's load may slow one of them
    end = {p: gemm_rate(p, max_seconds=6.0) for p in ("fp32", "bf16")}
    machine["gemm_start"], machine["gemm_end"] = machine["gemm"], end
    machine["gemm"] = {p: max(machine["gemm_start"][p], end[p], key=lambda g: g["gflops_per_s"]) for p in end}
    gemm = {k: v["gflops_per_s"] for k, v in machine["gemm"].items()}
    for r in all_rows:
        r["gemm_frac"] = r["gflops_s"] / gemm[r["precision"]]
        if r["best"]:
            r["verdict"] = verdict(r)
    head = [f"{machine['cpu']} ({machine['cpu_capability']}), {machine['cpu_count']} CPUs, torch {machine['torch']}, "
            f"threads {threads['threads']}" + (f" (auto, probe s: {threads['probe_seconds']})" if "probe_seconds"
                                              in threads else ""),
            "GEMM (this run, faster of start / end): " + ", ".join(
                f"{k} {v:.4g} GFLOP/s (n={machine['gemm'][k]['n']}, {machine['gemm'][k]['op']}; start "
                f"{machine['gemm_start'][k]['gflops_per_s']:.4g}, end {end[k]['gflops_per_s']:.4g})"
                for k, v in gemm.items()),
            f"{args.img_size}x{args.img_size}, {rounds} interleaved rounds (median), budget {budget:g} s per path "
            f"and batch, {n_check} check images"]
    wall = time.perf_counter() - t_start
    lines = head + ["", fmt_table(all_rows), "",
                    "★ fastest path of its precision at the largest batch; target checked on it: fp32 "
                    + TARGETS["fp32"] + "; bf16 " + TARGETS["bf16"],
                    "batch a→b: the budget shrank the batch; ×base: img/s over the baseline at the same requested "
                    "batch; max|Δ| / top-1 vs the baseline",
                    "official implementation, batch 32 (quoted in the issue, not measured here): "
                    + ", ".join(f"{k} {v} img/s" for k, v in OFFICIAL.items()),
                    f"wall time {wall:.0f} s"]
    print("\n" + "\n".join(lines))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "bench_models.txt").write_text("\n".join(lines) + "\n")
    (args.out_dir / "bench_models.json").write_text(json.dumps(
        {"machine": machine, "threads": threads, "rows": all_rows, "details": details, "wall_s": wall,
         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
