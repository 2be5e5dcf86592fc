"""``uniformer profile``: params, FLOPs, latency, throughput and memory of the published entries.

``--task imagenet`` writes ``<out-dir>/models_imagenet.{md,csv}``: one row per published ImageNet entry
(22), published vs measured params / GFLOPs with a verdict, and speed per precision at the entry's
resolution, against GEMM rates measured in the same run. Defaults come from ``profile.<profile>`` in
params.yaml; every entry x precision gets a time budget (``max_seconds_per_model``) that shrinks its
throughput batch (the batch used is recorded) or skips it when even one image would not fit, which
keeps the smoke profile within minutes on a 2-core CPU. One MLflow run per entry (stage ``profile``).

Video tasks profile the published video entries the same way, per view (one clip of (3, T, H, W), one
crop) and in total over the test views: ``kinetics`` (Kinetics-400 + 600) and ``something``
(Something-Something V1 + V2) write ``models_<task>.{md,csv}``; ``kinetics400``, ``kinetics600``,
``ssv1``, ``ssv2`` profile one data set (``models_<data set>.{md,csv}``), logged under the paper table it
belongs to. Entries sharing a network and input (37 entries, 14 measurements) reuse one FLOP count and
timing. Video budgets come from the optional ``profile.<profile>.video`` sub-dict, which overrides any
key of ``profile.<profile>`` for video tasks (``--set video.KEY=VALUE`` works with or without it).

Tasks are a table (``TASKS``): a data-loader throughput task (``loader``) plugs in next to ``imagenet``.
"""
import argparse
import datetime
import gc
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Hashable, List, Sequence, Tuple

from ..config import ConfigError, active_profile, apply_overrides, load_params, section

PROBE = ("uniformer_xxs", 128)  # small model timed to choose the thread count and the bf16/fp16 mode
# video task -> (paper table, data sets, title); the table is the MLflow experiment
VIDEO_TASKS = {
    "kinetics": ("kinetics", ("kinetics400", "kinetics600"), "Kinetics-400/600"),
    "something": ("something", ("ssv1", "ssv2"), "Something-Something V1/V2"),
    "kinetics400": ("kinetics", ("kinetics400",), "Kinetics-400"),
    "kinetics600": ("kinetics", ("kinetics600",), "Kinetics-600"),
    "ssv1": ("something", ("ssv1",), "Something-Something V1"),
    "ssv2": ("something", ("ssv2",), "Something-Something V2"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", choices=sorted(TASKS), help="same as --task (e.g. `uniformer profile loader`)")
    p.add_argument("--task", choices=sorted(TASKS), default="imagenet", help="what to profile (default imagenet)")
    p.add_argument("--data-root", help="loader: data set root (default: params.yaml data.imagenet.<profile>.root)")
    p.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2], help="loader: worker counts to sweep")
    p.add_argument("--img-size", type=int, default=224, help="loader: training crop size")
    p.add_argument("--out-dir", type=Path, default=Path("reports"), help="report folder (default reports)")
    p.add_argument("--profile", help="params.yaml profile (default: profile_name / $UNIFORMER_PROFILE)")
    p.add_argument("--models", nargs="+", metavar="NAME",
                   help="only these registered models or entries (e.g. uniformer_small uniformer_base_tl.in1k_384 "
                        "uniformer_small_video.k400_16x4)")
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
    """(profile name, profile.<profile> of params.yaml with ``--set`` overrides, then the explicit flags).

    Video tasks: the ``video`` sub-dict and ``--set video.KEY=VALUE`` override the profile's keys (only
    known keys; recorded as ``video_overrides``); explicit flags still win. Other tasks ignore them.
    """
    params = load_params()
    profile = active_profile(params, args.profile)
    cfg = section(params, "profile", profile)
    video = cfg.pop("video", None) or {}
    sets = [s for s in args.set if not s.startswith("video.")]
    video_sets = [s[len("video."):] for s in args.set if s.startswith("video.")]
    cfg = apply_overrides(cfg, sets)
    unknown = sorted(set(video) - set(cfg))
    if unknown:
        raise ConfigError(f"params.yaml: profile.{profile}.video: unknown keys {unknown} (known: {sorted(cfg)})")
    video_cfg = apply_overrides({**cfg, **video}, video_sets)  # validated for every task
    if args.task in VIDEO_TASKS:
        cfg = video_cfg
        cfg["video_overrides"] = sorted(set(video) | {s.split("=", 1)[0] for s in video_sets})
        for key in ("channels_last", "fold_bn"):
            if cfg.get(key) or getattr(args, key, None):
                raise ConfigError(f"{key} rewrites 2-D models only (4-D tensors, BatchNorm2d); the video models "
                                  f"are 3-D: set profile.{profile}.video.{key}: false")
    flags = {"precisions": args.precision, "half_mode": args.half_mode, "channels_last": args.channels_last,
             "fold_bn": args.fold_bn, "compile": args.compile, "batch_sizes": args.batch_sizes, "train": args.train,
             "max_seconds_per_model": args.budget}
    cfg.update({k: v for k, v in flags.items() if v is not None})
    from ..provenance import stamp

    cfg["provenance"] = stamp("profile", params, profile, [args.task] + list(args.set) + [
        f"{k}={v}" for k, v in flags.items() if v is not None])  # what the flags changed makes another result
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


def profile_entry(kind: "Kind", e, model, gmacs: float, precisions, modes, cfg, rate_est, device
                  ) -> Dict[str, Dict]:
    """Timings per precision for one entry; updates ``rate_est`` (achieved FLOP/s) for the next skip decision."""
    from .optimize import optimize_for_inference
    from .speed import profile_inference, profile_train

    budget = cfg["max_seconds_per_model"] or None
    bs = cfg["batch_sizes"]
    shape = kind.input_shape(e)
    out = {}
    for p in precisions:
        mode = modes.get(p, {}).get("mode")
        est = 2e9 * gmacs / rate_est[p]  # seconds per input at the latency batch
        if budget and 2 * est * bs[0] > budget:
            out[p] = {"status": "skipped", "mode": mode,
                      "reason": f"est. {est:.3g} s/{kind.unit}, 1 warm-up + 1 timed > {budget:g} s budget"}
            continue
        om = optimize_for_inference(model, p, channels_last=cfg["channels_last"], compile=cfg["compile"],
                                    fold_bn=cfg["fold_bn"], cast_weights=mode == "weights", fused_attn=None,
                                    device=device)
        t = profile_inference(om, shape, bs, cfg["warmup"], cfg["repeats"], budget, device, cfg["compile"])
        lat = t["latency"]
        # optimistic (best so far): a noisy slow measurement must not make every later entry "skipped"
        rate_est[p] = max([rate_est[p]] + [2e9 * gmacs * r["img_per_s"] for r in [lat] + t["throughput"]])
        cut = lat["truncated"] or any(r["truncated"] or r["batch_size"] < r["requested"] for r in t["throughput"])
        t.update(status="truncated" if cut else "ok", mode=mode)
        if cut:
            t["reason"] = "time budget: fewer repeats or a smaller batch than asked"
        if cfg.get("train"):
            t["train"] = profile_train(model, shape, bs[-1], cfg["warmup"], cfg["repeats"], budget,
                                       lat["seconds"] / lat["batch_size"], device, p, cfg["channels_last"],
                                       getattr(model, "num_classes", 1000))
        out[p] = t
        del om
        gc.collect()
    return out


def _log_mlflow(table: str, e, row: Dict, notes: List[str], profile: str, cfg: Dict) -> None:
    from ..tracking import start_run

    params = {**cfg, "entry": e.name, **{k: row[k] for k in ("resolution", "frames", "views") if k in row}}
    tags = {"entry": e.name, "verdict": row["verdict"]}
    if row.get("note"):
        tags["verdict_note"] = notes[row["note"] - 1][:5000]
    if row.get("timing_shared_with"):
        tags["timing_shared_with"] = row["timing_shared_with"]
    with start_run(table, "profile", e.name, profile, params, tags) as run:
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
    video = cfg.get("video_overrides")
    video_text = "" if video is None else (
        f"; video settings from `profile.{profile}.video` / `--set video.*`: {', '.join(video)} (flags win)"
        if video else "; no video overrides (the image settings)")
    return {
        "Machine": f"{machine['cpu']} ({machine['cpu_capability']}), {machine['cpu_count']} CPUs, "
                   f"GPU {machine['gpu']}, device {machine['device']}, torch {machine['torch']}",
        "Threads": f"{machine['threads']}{th_text}",
        "GEMM rate (this run)": gemm + "; median of square matrix products (2·n³ FLOP each), measured before and "
                                "after the models, the faster of the two used",
        "Profile": f"`{profile}`{video_text}",
        "Batch sizes": f"latency {bs[0]}, throughput {', '.join(map(str, bs[1:])) or '–'} (shrunk to fit the budget)",
        "Timing": f"{cfg['warmup']} warm-up + {cfg['repeats']} timed calls, median; budget "
                  f"{cfg['max_seconds_per_model'] or '∞'} s per entry and precision",
        "Options": f"channels_last {cfg['channels_last']}, BN folding {cfg['fold_bn']}, "
                   f"torch.compile {cfg['compile']}, SDPA attention (model default)",
        "Half precision": mode_text,
        "Date": f"{started.isoformat(timespec='seconds')} (run took {wall:.0f} s)",
    }


IMAGE_LEGEND = [
    "Published params / GFLOPs are the entry's row of paper_results.csv; ours: parameter count and fvcore "
    "multiply-adds (the paper's \"FLOPs\") for one image at the entry's resolution. Δ = ours / published − 1.",
    "Verdict: `ok` when params and GFLOPs are within {tol}% of the published figures.",
]
VIDEO_LEGEND = [
    "Published GFLOPs are the entry's row of paper_results.csv: the README's total over the test views (spatial "
    "crops × temporal clips) and that total / views per view; the README publishes no params. Ours: parameter "
    "count and fvcore multiply-adds (the paper's \"FLOPs\") for one view (one clip of T frames at H × H, batch 1), "
    "× views for the total. Δ = ours / published − 1.",
    "Verdict: `ok` when our GFLOPs per view, and per view × views against the published total, are within {tol}%.",
    "Timing `as <entry>`: the entry has the same network and input as that one (only the classifier differs: "
    "400 / 600 / 174 classes) and reuses its FLOP count (plus the exact head difference) and timings.",
]
COMMON_LEGEND = [
    "{rate}: best throughput over the throughput batch sizes (the batch actually used in parentheses; "
    "`*` = truncated by the time budget); latency: ms per forward at the latency batch.",
    "GFLOP/s: 2 × multiply-adds × {rate}, and its fraction of the GEMM rate of the same precision measured above.",
    "`skipped`: one warm-up + one timed {noun} was estimated to exceed the time budget (reason in the CSV).",
    "The CSV (and `--json`) also has per precision: status and reason, half-precision mode, repeats done and peak "
    "memory (CUDA: max allocated; CPU: growth of peak RSS, a lower bound as freed memory is reused).",
]


@dataclass(frozen=True)
class Kind:
    """What differs between image and video entries; ``run_entries`` does the rest for both."""
    unit: str  # one input, in "s/<unit>"
    rate: str  # throughput column unit
    noun: str
    legend: Sequence[str]  # lines before COMMON_LEGEND
    build_key: Callable[[object], Hashable]  # entries with one key share one built model
    build: Callable[[object], object]
    input_shape: Callable[[object], Tuple[int, ...]]  # one input, without the batch dim
    fields: Callable[[object], Dict]  # the kind's own result fields (see report.build_rows)


def _build_image(e):
    import timm

    return timm.create_model(e.model, img_size=e.img_size)  # img_size is metadata only: one build per model


def _build_video(e):
    """The entry's network: its head, and the light models' fp32-attention switch (which the S/B constructors
    lack); frames and resolution are input shapes, not constructor arguments."""
    import timm

    from ..models.video_catalog import LIGHT_VIDEO_MODELS

    kw = {"attn_fp32": e.attn_fp32} if e.row["model"] in LIGHT_VIDEO_MODELS else {}
    return timm.create_model(e.model, num_classes=e.num_classes, **kw)


def _video_fields(e) -> Dict:
    return {"task": e.row["task"], "input_size": tuple(e.input_size),
            "views": int(e.row["spatial_crops"]) * int(e.row["temporal_clips"])}


IMAGE = Kind("img", "img/s", "image", IMAGE_LEGEND, lambda e: e.model, _build_image,
             lambda e: (3, e.img_size, e.img_size), lambda e: {"img_size": e.img_size})
VIDEO = Kind("clip", "clips/s", "clip", VIDEO_LEGEND, lambda e: (e.model, e.num_classes, e.attn_fp32), _build_video,
             lambda e: tuple(e.input_size), _video_fields)


def run_entries(args, cfg: Dict, profile: str, kind: Kind, entries: Sequence, table: str, stem: str,
                title: str) -> int:
    """Profile ``entries``: ``<out-dir>/<stem>.{md,csv}``, ``--json``, one MLflow run per entry in ``table``.

    Models are built once per ``kind.build_key`` and freed after their last entry. A FLOP count and the
    timings depend on the network and the input only, so entries sharing both reuse the first one's
    (``timing_shared_with``), its FLOPs corrected by the exact difference of the classifier heads.
    """
    from tqdm import tqdm

    from .. import io
    from .flops import count_flops, count_params, head_gmacs
    from .machine import gemm_rate, measure_machine
    from .report import build_rows, render_csv, render_markdown

    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    precisions = list(dict.fromkeys(cfg["precisions"]))
    device = args.device
    threads = pick_threads_for(cfg, device)
    machine = measure_machine(precisions, device, cfg.get("gemm_seconds", 3.0))
    machine["threads_choice"], machine["gemm_start"] = threads, machine["gemm"]
    modes = {p: pick_half_mode(p, cfg, device) for p in precisions if p != "fp32"}
    # first guess of each precision's achieved rate; replaced by the measured one after every entry
    rate_est = {p: 0.5 * machine["gemm"][p]["gflops_per_s"] * 1e9 for p in precisions}
    uses = Counter(kind.build_key(e) for e in entries)
    models, measured, results = {}, {}, []
    bar = tqdm(entries, desc=f"profile {args.task}", unit="entry", disable=args.no_progress, file=sys.stderr)
    for e in bar:
        bar.set_postfix_str(e.name)
        build_key, shape = kind.build_key(e), kind.input_shape(e)
        if build_key not in models:
            models[build_key] = kind.build(e).eval()
        model = models[build_key]
        result = {"entry": e.name, "label": e.label, "model": e.model, "tag": e.tag, **kind.fields(e), "row": e.row,
                  "params": count_params(model)}
        key = (e.model, shape, getattr(e, "attn_fp32", None))
        first = measured.get(key)
        if first is None:
            gmacs = count_flops(model, shape)["gflops"]
            timing = profile_entry(kind, e, model, gmacs, precisions, modes, cfg, rate_est, device)
            measured[key] = {"entry": e.name, "gmacs": gmacs, "head": head_gmacs(model), "timing": timing}
            result.update(gmacs=gmacs, timing=timing)
        else:
            result.update(gmacs=first["gmacs"] + (head_gmacs(model) - first["head"]), timing=first["timing"],
                          timing_shared_with=first["entry"])
        results.append(result)
        uses[build_key] -= 1
        if not uses[build_key]:
            del models[build_key]
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
            _log_mlflow(table, e, row, notes, profile, cfg)
    wall = time.perf_counter() - t0
    header = _header(machine, cfg, profile, modes, started, wall)
    legend = [s.format(tol=cfg["flops_tolerance_pct"], rate=kind.rate, noun=kind.noun)
              for s in list(kind.legend) + COMMON_LEGEND]
    md = render_markdown(rows, notes, precisions, header, title, legend)
    io.write_text(args.out_dir / f"{stem}.md", md)
    io.write_text(args.out_dir / f"{stem}.csv", render_csv(rows))
    if args.json:
        io.write_json(args.json, {"profile": profile, "provenance": cfg["provenance"], "config": cfg,
                                  "machine": machine, "half_modes": modes,
                                  "date": started.isoformat(), "wall_s": wall, "rows": rows, "notes": notes,
                                  "results": [{k: v for k, v in r.items() if k != "row"} for r in results]})
    print(f"wrote {args.out_dir / f'{stem}.md'} and .csv ({len(rows)} entries, {wall:.0f} s)")
    return 0


def run_imagenet(args, cfg: Dict, profile: str) -> int:
    from ..models.catalog import imagenet_entries

    return run_entries(args, cfg, profile, IMAGE, select_entries(imagenet_entries(), args.models), "imagenet",
                       "models_imagenet", "UniFormer ImageNet models: params, FLOPs and speed")


def run_video(args, cfg: Dict, profile: str) -> int:
    """A ``VIDEO_TASKS`` task: its data sets' entries, logged under its paper table."""
    from ..models.video_catalog import video_entries

    table, datasets, title = VIDEO_TASKS[args.task]
    entries = select_entries([e for d in datasets for e in video_entries(d)], args.models)
    return run_entries(args, cfg, profile, VIDEO, entries, table, f"models_{args.task}",
                       f"UniFormer video models ({title}): params, FLOPs per view × views, speed")


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


TASKS = {"imagenet": run_imagenet, "loader": run_loader, **{t: run_video for t in VIDEO_TASKS}}


def run(args) -> int:
    if args.what:
        args.task = args.what
    profile, cfg = resolve_config(args)
    return TASKS[args.task](args, cfg, profile)
