"""``uniformer profile``: params, FLOPs, latency, throughput and memory of the published entries.

``--task imagenet`` writes ``<out-dir>/models_imagenet.{md,csv}``: one row per published ImageNet entry
(22), published vs measured params / GFLOPs with a verdict, and speed per precision at the entry's
resolution, against GEMM rates measured in the same run. Defaults come from ``profile.<profile>`` in
params.yaml; every entry x precision gets a time budget (``max_seconds_per_model``) that shrinks its
throughput batch (the batch used is recorded) or skips it when even one image would not fit, which
keeps the smoke profile within minutes on a 2-core CPU. One MLflow run per entry (stage ``profile``).

Tasks are a table (``TASKS``): a data-loader throughput task (``loader``) plugs in next to ``imagenet``.
"""
import argparse
import datetime
import gc
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

from ..config import ConfigError, active_profile, apply_overrides, load_params, section

PROBE = ("uniformer_xxs", 128)  # small model timed to choose the thread count and the bf16/fp16 mode


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", choices=sorted(TASKS), help="same as --task (e.g. `uniformer profile loader`)")
    p.add_argument("--task", choices=sorted(TASKS), default="imagenet", help="what to profile (default imagenet)")
    p.add_argument("--data-root", help="loader: data set root (default: params.yaml data.imagenet.<profile>.root)")
    p.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2], help="loader: worker counts to sweep")
    p.add_argument("--img-size", type=int, default=224, help="loader: training crop size")
    p.add_argument("--out-dir", type=Path, default=Path("reports"), help="report folder (default reports)")
    p.add_argument("--profile", help="params.yaml profile (default: profile_name / $UNIFORMER_PROFILE)")
    p.add_argument("--models", nargs="+", metavar="NAME",
                   help="only these registered models or entries (e.g. uniformer_small uniformer_base_tl.in1k_384)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write every measured figure as JSON")
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16", "fp16"], help="precisions to time")
    p.add_argument("--half-mode", choices=["auto", "weights", "autocast"],
                   help="bf16/fp16 as cast weights, autocast, or auto (time both on a small model, keep the faster)")
    p.add_argument("--channels-last", action="store_true", default=None, help="channels_last memory format")
    p.add_argument("--fold-bn", action="store_true", default=None, help="fold BatchNorm into adjacent convs")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile (compile time not budgeted)")
    p.add_argument("--batch-sizes", nargs="+", type=int, metavar="N",
                   help="first: latency batch; others: throughput batches (default from params.yaml, e.g. 1 32)")
    p.add_argument("--train", action="store_true", default=None, help="also time training steps (fwd+bwd+AdamW)")
    p.add_argument("--budget", type=float, metavar="S", help="seconds per entry and precision (0 = unlimited)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override profile.<profile> keys")
    p.add_argument("--no-mlflow", action="store_true", help="do not log MLflow runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_config(args) -> Tuple[str, Dict]:
    """(profile name, profile.<profile> of params.yaml with ``--set`` overrides, then the explicit flags)."""
    params = load_params()
    profile = active_profile(params, args.profile)
    cfg = apply_overrides(section(params, "profile", profile), args.set)
    flags = {"precisions": args.precision, "half_mode": args.half_mode, "channels_last": args.channels_last,
             "fold_bn": args.fold_bn, "compile": args.compile, "batch_sizes": args.batch_sizes, "train": args.train,
             "max_seconds_per_model": args.budget}
    cfg.update({k: v for k, v in flags.items() if v is not None})
    if not cfg.get("batch_sizes"):
        raise ConfigError("profile.batch_sizes must list at least the latency batch size, e.g. [1, 32]")
    return profile, cfg


def select_entries(entries, names):
    if not names:
        return list(entries)
    known = {e.model for e in entries} | {e.name for e in entries}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--models: unknown {unknown}; known models: {sorted({e.model for e in entries})}")
    return [e for e in entries if e.model in names or e.name in names]


def _probe_model(device: str):
    import timm

    from .speed import random_images

    name, size = PROBE
    return timm.create_model(name, img_size=size).eval().to(device), random_images(1, size, device)


def pick_threads_for(cfg: Dict, device: str) -> Dict:
    """``threads`` > 0: use it; 0: all cores only if they run the fp32 ``PROBE`` forward 1.2x faster than 1 (CPU)."""
    import torch

    from .speed import pick_threads

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
        return {"threads": int(cfg["threads"])}
    if torch.device(device).type != "cpu":
        return {"threads": torch.get_num_threads()}
    model, x = _probe_model(device)
    with torch.inference_mode():
        best, secs = pick_threads(lambda: model(x), [1, torch.get_num_threads()])
    return {"threads": best, "probe": "{}@{}".format(*PROBE), "probe_seconds": secs}


def pick_half_mode(precision: str, cfg: Dict, device: str) -> Dict:
    """Cast weights or autocast for ``precision``: as configured, or the faster one on ``PROBE`` (batch 1)."""
    mode = cfg.get("half_mode", "auto")
    if mode != "auto":
        return {"mode": mode}
    import torch

    from .optimize import optimize_for_inference
    from .speed import pick_fastest

    model, x = _probe_model(device)
    fns = {}
    for m in ("weights", "autocast"):
        om = optimize_for_inference(model, precision, channels_last=cfg["channels_last"], fold_bn=cfg["fold_bn"],
                                    cast_weights=m == "weights", fused_attn=None, device=device)
        fns[m] = (lambda om=om: om(x))
    with torch.inference_mode():
        best, secs = pick_fastest(fns)
    return {"mode": best, "probe": "{}@{}".format(*PROBE), "probe_seconds": secs}


def profile_entry(e, model, gmacs: float, precisions, modes, cfg, rate_est, device) -> Dict[str, Dict]:
    """Timings per precision for one entry; updates ``rate_est`` (achieved FLOP/s) for the next skip decision."""
    from .optimize import optimize_for_inference
    from .speed import profile_inference, profile_train

    budget = cfg["max_seconds_per_model"] or None
    bs = cfg["batch_sizes"]
    out = {}
    for p in precisions:
        mode = modes.get(p, {}).get("mode")
        est = 2e9 * gmacs / rate_est[p]  # seconds per image at the latency batch
        if budget and 2 * est * bs[0] > budget:
            out[p] = {"status": "skipped", "mode": mode,
                      "reason": f"est. {est:.3g} s/img, 1 warm-up + 1 timed > {budget:g} s budget"}
            continue
        om = optimize_for_inference(model, p, channels_last=cfg["channels_last"], compile=cfg["compile"],
                                    fold_bn=cfg["fold_bn"], cast_weights=mode == "weights", fused_attn=None,
                                    device=device)
        t = profile_inference(om, e.img_size, bs, cfg["warmup"], cfg["repeats"], budget, device, cfg["compile"])
        lat = t["latency"]
        # optimistic (best so far): a noisy slow measurement must not make every later entry "skipped"
        rate_est[p] = max([rate_est[p]] + [2e9 * gmacs * r["img_per_s"] for r in [lat] + t["throughput"]])
        cut = lat["truncated"] or any(r["truncated"] or r["batch_size"] < r["requested"] for r in t["throughput"])
        t.update(status="truncated" if cut else "ok", mode=mode)
        if cut:
            t["reason"] = "time budget: fewer repeats or a smaller batch than asked"
        if cfg.get("train"):
            t["train"] = profile_train(model, e.img_size, bs[-1], cfg["warmup"], cfg["repeats"], budget,
                                       lat["seconds"] / lat["batch_size"], device, p, cfg["channels_last"])
        out[p] = t
        del om
        gc.collect()
    return out


def _log_mlflow(e, row: Dict, notes: List[str], profile: str, cfg: Dict) -> None:
    from ..tracking import start_run

    params = {**cfg, "entry": e.name, "resolution": e.img_size}
    tags = {"entry": e.name, "verdict": row["verdict"]}
    if row.get("note"):
        tags["verdict_note"] = notes[row["note"] - 1][:5000]
    with start_run("imagenet", "profile", e.name, profile, params, tags) as run:
        if run is not None:
            run.log_metrics({k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "note"})


def _header(machine: Dict, cfg: Dict, profile: str, modes: Dict, started: datetime.datetime, wall: float) -> Dict:
    gemm = ", ".join(
        f"{p} {g['gflops_per_s']:.4g} GFLOP/s (n={g['n']}; start {machine['gemm_start'][p]['gflops_per_s']:.4g}, "
        f"end {machine['gemm_end'][p]['gflops_per_s']:.4g})" for p, g in machine["gemm"].items())
    bs = cfg["batch_sizes"]
    mode_text = "; ".join(
        f"{p}: {m['mode']}" + (f" (probe {m['probe']} batch 1: " + ", ".join(
            f"{k} {v:.3g} s" for k, v in m["probe_seconds"].items()) + ")" if "probe" in m else "")
        for p, m in modes.items()) or "–"
    th = machine.get("threads_choice", {})
    th_text = (" (auto, all cores only if ≥1.2× faster; fp32 probe {} batch 1: ".format(th["probe"]) + ", ".join(
        f"{k} thread(s) {v * 1e3:.0f} ms" for k, v in th["probe_seconds"].items()) + ")") if "probe" in th else ""
    return {
        "Machine": f"{machine['cpu']} ({machine['cpu_capability']}), {machine['cpu_count']} CPUs, "
                   f"GPU {machine['gpu']}, device {machine['device']}, torch {machine['torch']}",
        "Threads": f"{machine['threads']}{th_text}",
        "GEMM rate (this run)": gemm + "; median of square matrix products (2·n³ FLOP each), measured before and "
                                "after the models, the faster of the two used",
        "Profile": f"`{profile}`",
        "Batch sizes": f"latency {bs[0]}, throughput {', '.join(map(str, bs[1:])) or '–'} (shrunk to fit the budget)",
        "Timing": f"{cfg['warmup']} warm-up + {cfg['repeats']} timed calls, median; budget "
                  f"{cfg['max_seconds_per_model'] or '∞'} s per entry and precision",
        "Options": f"channels_last {cfg['channels_last']}, BN folding {cfg['fold_bn']}, "
                   f"torch.compile {cfg['compile']}, SDPA attention (model default)",
        "Half precision": mode_text,
        "Date": f"{started.isoformat(timespec='seconds')} (run took {wall:.0f} s)",
    }


LEGEND = [
    "Published params / GFLOPs are the entry's row of paper_results.csv; ours: parameter count and fvcore "
    "multiply-adds (the paper's \"FLOPs\") for one image at the entry's resolution. Δ = ours / published − 1.",
    "Verdict: `ok` when params and GFLOPs are within {tol}% of the published figures.",
    "img/s: best throughput over the throughput batch sizes (the batch actually used in parentheses; "
    "`*` = truncated by the time budget); latency: ms per forward at the latency batch.",
    "GFLOP/s: 2 × multiply-adds × img/s, and its fraction of the GEMM rate of the same precision measured above.",
    "`skipped`: one warm-up + one timed image was estimated to exceed the time budget (reason in the CSV).",
    "The CSV (and `--json`) also has per precision: status and reason, half-precision mode, repeats done and peak "
    "memory (CUDA: max allocated; CPU: growth of peak RSS, a lower bound as freed memory is reused).",
]


def run_imagenet(args, cfg: Dict, profile: str) -> int:
    import timm
    import torch
    from tqdm import tqdm

    from .. import io
    from ..models.catalog import imagenet_entries
    from .flops import count_flops, count_params
    from .machine import gemm_rate, measure_machine
    from .report import build_rows, render_csv, render_markdown

    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    entries = select_entries(imagenet_entries(), args.models)
    precisions = list(dict.fromkeys(cfg["precisions"]))
    device = args.device
    threads = pick_threads_for(cfg, device)
    machine = measure_machine(precisions, device, cfg.get("gemm_seconds", 3.0))
    machine["threads_choice"], machine["gemm_start"] = threads, machine["gemm"]
    modes = {p: pick_half_mode(p, cfg, device) for p in precisions if p != "fp32"}
    # first guess of each precision's achieved rate; replaced by the measured one after every entry
    rate_est = {p: 0.5 * machine["gemm"][p]["gflops_per_s"] * 1e9 for p in precisions}
    uses = {}
    for e in entries:
        uses[e.model] = uses.get(e.model, 0) + 1
    models, flops_cache, results = {}, {}, []
    bar = tqdm(entries, desc="profile imagenet", unit="entry", disable=args.no_progress, file=sys.stderr)
    for e in bar:
        bar.set_postfix_str(e.name)
        if e.model not in models:  # img_size is metadata only: one build serves every resolution
            models[e.model] = timm.create_model(e.model, img_size=e.img_size).eval()
        model = models[e.model]
        key = (e.model, e.img_size)
        if key not in flops_cache:
            flops_cache[key] = count_flops(model, (3, e.img_size, e.img_size))["gflops"]
        result = {"entry": e.name, "label": e.label, "model": e.model, "tag": e.tag, "img_size": e.img_size,
                  "row": e.row, "params": count_params(model), "gmacs": flops_cache[key]}
        result["timing"] = profile_entry(e, model, result["gmacs"], precisions, modes, cfg, rate_est, device)
        results.append(result)
        uses[e.model] -= 1
        if not uses[e.model]:
            del models[e.model]
            gc.collect()
    bar.close()

    # again after the models: on a shared machine one of the two may be slowed by other jobs
    machine["gemm_end"] = {p: gemm_rate(p, device=device, max_seconds=cfg.get("gemm_seconds", 3.0))
                           for p in precisions}
    machine["gemm"] = {p: max(machine["gemm_start"][p], machine["gemm_end"][p], key=lambda g: g["gflops_per_s"])
                       for p in precisions}
    rows, notes = build_rows(results, precisions, machine["gemm"], cfg["flops_tolerance_pct"])
    if not args.no_mlflow:
        for e, row in zip(entries, rows):
            _log_mlflow(e, row, notes, profile, cfg)
    wall = time.perf_counter() - t0
    header = _header(machine, cfg, profile, modes, started, wall)
    legend = [s.format(tol=cfg["flops_tolerance_pct"]) for s in LEGEND]
    md = render_markdown(rows, notes, precisions, header, "UniFormer ImageNet models: params, FLOPs and speed", legend)
    io.write_text(args.out_dir / "models_imagenet.md", md)
    io.write_text(args.out_dir / "models_imagenet.csv", render_csv(rows))
    if args.json:
        io.write_json(args.json, {"profile": profile, "config": cfg, "machine": machine, "half_modes": modes,
                                  "date": started.isoformat(), "wall_s": wall, "rows": rows, "notes": notes,
                                  "results": [{k: v for k, v in r.items() if k != "row"} for r in results]})
    print(f"wrote {args.out_dir / 'models_imagenet.md'} and .csv ({len(rows)} entries, {wall:.0f} s)")
    return 0


def run_loader(args, cfg: Dict, profile: str) -> int:
    """Data-loader throughput (decode + training augmentation) per worker count: is decoding or the model the limit?"""
    from .. import io
    from ..engine.loader_bench import loader_throughput
    from ..tracking import start_run

    root = args.data_root or section(load_params(), "data", profile, "imagenet")["root"]
    batch = (args.batch_sizes or [1, 32])[-1]
    results = []
    print(f"{'workers':>7}  {'img/s':>8}  {'first batch (s)':>15}  batches", file=sys.stderr)
    for w in args.workers:
        r = loader_throughput(root, img_size=args.img_size, batch_size=batch, num_workers=w, max_batches=20)
        results.append(r)
        ips = "–" if r["img_per_s"] is None else f"{r['img_per_s']:.1f}"
        print(f"{w:>7}  {ips:>8}  {r['first_batch_s'] or 0:>15.2f}  {r['batches']}", file=sys.stderr)
        if not args.no_mlflow:
            with start_run("imagenet", "profile_loader", f"loader_w{w}", profile, {**r, "cpu_count": os.cpu_count()}) \
                    as mlrun:
                if mlrun is not None:
                    mlrun.log_metrics({k: v for k, v in r.items() if isinstance(v, (int, float))})
    if args.json:
        io.write_json(args.json, {"profile": profile, "loader": results})
    return 0


TASKS = {"imagenet": run_imagenet, "loader": run_loader}


def run(args) -> int:
    if args.what:
        args.task = args.what
    profile, cfg = resolve_config(args)
    return TASKS[args.task](args, cfg, profile)
