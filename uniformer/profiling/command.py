"""``uniformer profile``: params, FLOPs, latency, throughput and memory of the published entries.

``--task imagenet`` writes ``<out-dir>/models_imagenet.{md,csv}``: one row per published ImageNet entry
(22), published vs measured params / GFLOPs with a verdict, and speed per precision at the entry's
resolution, against GEMM rates measured in the same run. Defaults come from ``profile.<profile>`` in
params.yaml; every entry x precision gets a time budget (``max_seconds_per_model``) that shrinks its
throughput batch and repeats (what was used is recorded), and entries above ``max_gflops`` are not timed,
which keeps the smoke profile within minutes on a 2-core CPU. Which entries are timed depends on the
params only, never on the machine's speed, so the regression gate holds the same entries everywhere.
One MLflow run per entry (stage ``profile``).

What to profile (``TARGETS``) comes from the task registry (``uniformer.tasks``): every paper table
(``imagenet``, ``kinetics`` = Kinetics-400 + 600, ``something`` = Something-Something V1 + V2) and every data
set of a table with several (``kinetics400``, ..., ``ssv2``: ``models_<data set>.{md,csv}``, logged under
its table). The table's task gives the input shape of an entry, the model to build and the report's units:
video entries are profiled per view (one clip of (3, T, H, W), one crop) and in total over the test views;
entries sharing a network and input (37 video entries, 14 measurements) reuse one FLOP count and timing.
A task may name a sub-dict of ``profile.<profile>`` (video: ``video``) whose keys override the profile's
for it (``--set video.KEY=VALUE`` works with or without it). ``loader`` (data-loader throughput) is the
one target that is not a table.
"""
import argparse
import datetime
import gc
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, NamedTuple, Sequence, Tuple

import timm
import torch
from tqdm import tqdm

from .. import io
from ..config import ConfigError, active_profile, add_settings_argument, apply_overrides, load_params, section
from ..provenance import stamp
from ..tasks import TableSpec, get_dataset, tables
from ..tracking import start_run
from .flops import count_flops, count_params, head_gmacs
from .loader_bench import loader_throughput
from .machine import gemm_rate, measure_machine
from .optimize import optimize_for_inference
from .report import build_rows, render_csv, render_markdown
from .speed import pick_fastest, pick_threads, profile_inference, profile_train, random_images

PROBE = ("uniformer_xxs", 128)  # small model timed to choose the thread count and the bf16/fp16 mode
LOADER = "loader"


class Target(NamedTuple):
    """What ``--task <name>`` profiles: the entries of ``datasets``, logged under ``table``."""
    table: TableSpec
    datasets: Tuple[str, ...]
    title: str


def targets() -> Dict[str, Target]:
    """Every table, and each data set of a table with several."""
    out = {}
    for t in tables().values():
        out[t.name] = Target(t, t.datasets, t.short_title or t.title)
        if len(t.datasets) > 1:
            out.update({d: Target(t, (d,), get_dataset(d).title) for d in t.datasets})
    return out


TARGETS = targets()


def add_arguments(p: argparse.ArgumentParser) -> None:
    choices = sorted([*TARGETS, LOADER])
    p.add_argument("what", nargs="?", choices=choices, help="same as --task (e.g. `uniformer profile loader`)")
    p.add_argument("--task", choices=choices, default="imagenet", help="what to profile: a table, a data set of "
                                                                        "one, or loader (default imagenet)")
    p.add_argument("--data-root", help="loader: data set root (default: params.yaml data.imagenet.<profile>.root)")
    p.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2], help="loader: worker counts to sweep")
    p.add_argument("--img-size", type=int, default=224, help="loader: training crop size")
    p.add_argument("--out-dir", type=Path, default=Path("reports"), help="report folder (default reports)")
    add_settings_argument(p)
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

    A task's ``profile_section`` (video: ``video``) names a sub-dict whose keys, and ``--set
    <section>.KEY=VALUE``, override the profile's for that task (only known keys; recorded as
    ``<section>_overrides``); explicit flags still win. Other tasks ignore them (but they are validated).
    """
    params = load_params()
    profile = active_profile(params, args.profile)
    cfg = section(params, "profiling", profile)
    names = {t.table.task.profile_section for t in TARGETS.values()} - {""}
    subs = {n: cfg.pop(n, None) or {} for n in names}
    sub_sets = {n: [s[len(n) + 1:] for s in args.set if s.startswith(n + ".")] for n in names}
    cfg = apply_overrides(cfg, [s for s in args.set if s.split(".", 1)[0] not in names])
    resolved = {}
    for n in sorted(names):  # validated for every task
        unknown = sorted(set(subs[n]) - set(cfg))
        if unknown:
            raise ConfigError(f"params.yaml: profile.{profile}.{n}: unknown keys {unknown} (known: {sorted(cfg)})")
        resolved[n] = apply_overrides({**cfg, **subs[n]}, sub_sets[n])
    task = TARGETS[args.task].table.task if args.task in TARGETS else None
    if task is not None and task.profile_section:
        n = task.profile_section
        cfg = resolved[n]
        cfg[f"{n}_overrides"] = sorted(set(subs[n]) | {s.split("=", 1)[0] for s in sub_sets[n]})
    for key in task.profile_off if task is not None else ():
        if cfg.get(key) or getattr(args, key, None):
            raise ConfigError(f"{key} does not apply to the {task.name} models (it rewrites 2-D models only: 4-D "
                              f"tensors, BatchNorm2d): set profile.{profile}.{task.profile_section}.{key}: false")
    flags = {"precisions": args.precision, "half_mode": args.half_mode, "channels_last": args.channels_last,
             "fold_bn": args.fold_bn, "compile": args.compile, "batch_sizes": args.batch_sizes, "train": args.train,
             "max_seconds_per_model": args.budget}
    cfg.update({k: v for k, v in flags.items() if v is not None})
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
    name, size = PROBE
    return timm.create_model(name, img_size=size).eval().to(device), random_images(1, size, device)


def pick_threads_for(cfg: Dict, device: str) -> Dict:
    """``threads`` > 0: use it; 0: all cores only if they run the fp32 ``PROBE`` forward 1.2x faster than 1 (CPU)."""
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
    model, x = _probe_model(device)
    fns = {}
    for m in ("weights", "autocast"):
        om = optimize_for_inference(model, precision, channels_last=cfg["channels_last"], fold_bn=cfg["fold_bn"],
                                    cast_weights=m == "weights", fused_attn=None, device=device)
        fns[m] = (lambda om=om: om(x))
    with torch.inference_mode():
        best, secs = pick_fastest(fns)
    return {"mode": best, "probe": "{}@{}".format(*PROBE), "probe_seconds": secs}


def profile_entry(task, e, model, gmacs: float, precisions, modes, cfg, device) -> Dict[str, Dict]:
    """Timings per precision for one entry, or ``skipped`` above ``max_gflops`` (GFLOPs per input)."""
    budget = cfg["max_seconds_per_model"] or None
    cap = cfg.get("max_gflops")
    bs = cfg["batch_sizes"]
    shape = task.profile_inputs(e)
    out = {}
    for p in precisions:
        mode = modes.get(p, {}).get("mode")
        if cap is not None and gmacs > cap:  # a FLOP cap, not a time estimate: the same entries on every machine
            out[p] = {"status": "skipped", "mode": mode,
                      "reason": f"{gmacs:.4g} GFLOPs/{task.profile_unit} > max_gflops {cap:g} of this profile"}
            continue
        om = optimize_for_inference(model, p, channels_last=cfg["channels_last"], compile=cfg["compile"],
                                    fold_bn=cfg["fold_bn"], cast_weights=mode == "weights", fused_attn=None,
                                    device=device)
        t = profile_inference(om, shape, bs, cfg["warmup"], cfg["repeats"], budget, device, cfg["compile"])
        lat = t["latency"]
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
    sub = next((k[:-len("_overrides")] for k in cfg if k.endswith("_overrides")), None)  # the task's section
    sub_text = "" if sub is None else (
        f"; {sub} settings from `profile.{profile}.{sub}` / `--set {sub}.*`: {', '.join(cfg[sub + '_overrides'])} "
        "(flags win)" if cfg[sub + "_overrides"] else f"; no {sub} overrides (the image settings)")
    return {
        "Machine": f"{machine['cpu']} ({machine['cpu_capability']}), {machine['cpu_count']} CPUs, "
                   f"GPU {machine['gpu']}, device {machine['device']}, torch {machine['torch']}",
        "Threads": f"{machine['threads']}{th_text}",
        "GEMM rate (this run)": gemm + "; median of square matrix products (2·n³ FLOP each), measured before and "
                                "after the models, the faster of the two used" if gemm else
                                "not measured: no precision is timed (params and FLOPs only)",
        "Profile": f"`{profile}`{sub_text}",
        "Batch sizes": f"latency {bs[0]}, throughput {', '.join(map(str, bs[1:])) or '–'} (shrunk to fit the budget)",
        "Timing": f"{cfg['warmup']} warm-up + {cfg['repeats']} timed calls, median; budget "
                  f"{cfg['max_seconds_per_model'] or '∞'} s per entry and precision; entries above "
                  f"{cfg.get('max_gflops') or '∞'} GFLOPs not timed",
        "Options": f"channels_last {cfg['channels_last']}, BN folding {cfg['fold_bn']}, "
                   f"torch.compile {cfg['compile']}, SDPA attention (model default)",
        "Half precision": mode_text,
        "Date": f"{started.isoformat(timespec='seconds')} (run took {wall:.0f} s)",
    }


COMMON_LEGEND = [
    "{rate}: best throughput over the throughput batch sizes (the batch actually used in parentheses; "
    "`*` = truncated by the time budget); latency: ms per forward at the latency batch.",
    "GFLOP/s: 2 × multiply-adds × {rate}, and its fraction of the GEMM rate of the same precision measured above.",
    "`skipped`: not timed, the entry is above this profile's `max_gflops` (reason in the CSV).",
    "The CSV (and `--json`) also has per precision: status and reason, half-precision mode, repeats done and peak "
    "memory (CUDA: max allocated; CPU: growth of peak RSS, a lower bound as freed memory is reused).",
]


def run_entries(args, cfg: Dict, profile: str, task, entries: Sequence, table: str, stem: str,
                title: str) -> int:
    """Profile ``entries`` of ``task``: ``<out-dir>/<stem>.{md,csv}``, ``--json``, one MLflow run per entry in
    ``table``.

    Models are built once per ``task.profile_build_key`` and freed after their last entry. A FLOP count and the
    timings depend on the network and the input only, so entries sharing both reuse the first one's
    (``timing_shared_with``), its FLOPs corrected by the exact difference of the classifier heads.
    """
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    precisions = list(dict.fromkeys(cfg["precisions"]))
    device = args.device
    threads = pick_threads_for(cfg, device)
    machine = measure_machine(precisions, device, cfg.get("gemm_seconds", 3.0))
    machine["threads_choice"], machine["gemm_start"] = threads, machine["gemm"]
    modes = {p: pick_half_mode(p, cfg, device) for p in precisions if p != "fp32"}
    uses = Counter(task.profile_build_key(e) for e in entries)
    models, measured, results = {}, {}, []
    bar = tqdm(entries, desc=f"profile {args.task}", unit="entry", disable=args.no_progress, file=sys.stderr)
    for e in bar:
        bar.set_postfix_str(e.name)
        build_key, shape = task.profile_build_key(e), task.profile_inputs(e)
        if build_key not in models:
            models[build_key] = task.profile_model(e).eval()
        model = models[build_key]
        result = {"entry": e.name, "label": e.label, "model": e.model, "tag": e.tag, **task.profile_fields(e), "row": e.row,
                  "params": count_params(model)}
        key = (e.model, shape, getattr(e, "attn_fp32", None))
        first = measured.get(key)
        if first is None:
            flops = count_flops(model, shape, modules=list(task.profile_flops_parts.values()))
            gmacs = flops["gflops"]
            parts = {k: flops["gflops_by_module"][m] for k, m in task.profile_flops_parts.items()}
            timing = profile_entry(task, e, model, gmacs, precisions, modes, cfg, device)
            measured[key] = {"entry": e.name, "gmacs": gmacs, "head": head_gmacs(model), "timing": timing,
                             "parts": parts}
            result.update(gmacs=gmacs, timing=timing, **parts)
        else:
            result.update(gmacs=first["gmacs"] + (head_gmacs(model) - first["head"]), timing=first["timing"],
                          timing_shared_with=first["entry"], **first["parts"])
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
    rows, notes = build_rows(task, results, precisions, machine["gemm"], cfg["flops_tolerance_pct"])
    if not args.no_mlflow:
        for e, row in zip(entries, rows):
            _log_mlflow(table, e, row, notes, profile, cfg)
    wall = time.perf_counter() - t0
    header = _header(machine, cfg, profile, modes, started, wall)
    legend = [s.format(tol=cfg["flops_tolerance_pct"], rate=task.profile_rate, noun=task.profile_noun)
              for s in list(task.profile_legend) + COMMON_LEGEND]
    md = render_markdown(task, rows, notes, precisions, header, title, legend)
    io.write_text(args.out_dir / f"{stem}.md", md)
    io.write_text(args.out_dir / f"{stem}.csv", render_csv(rows))
    if args.json:
        io.write_json(args.json, {"profile": profile, "provenance": cfg["provenance"], "config": cfg,
                                  "machine": machine, "half_modes": modes,
                                  "date": started.isoformat(), "wall_s": wall, "rows": rows, "notes": notes,
                                  "results": [{k: v for k, v in r.items() if k != "row"} for r in results]})
    print(f"wrote {args.out_dir / f'{stem}.md'} and .csv ({len(rows)} entries, {wall:.0f} s)")
    return 0


def run_target(args, cfg: Dict, profile: str) -> int:
    """A table or one data set of it: its published entries, logged under the table."""
    target = TARGETS[args.task]
    entries = select_entries([e for d in target.datasets for e in get_dataset(d).entries()], args.models)
    task = target.table.task
    return run_entries(args, cfg, profile, task, entries, target.table.name, f"models_{args.task}",
                       task.profile_title(target.title))


def run_loader(args, cfg: Dict, profile: str) -> int:
    """Data-loader throughput (decode + training augmentation) per worker count: is decoding or the model the limit?"""
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


def run(args) -> int:
    if args.what:
        args.task = args.what
    profile, cfg = resolve_config(args)
    return (run_loader if args.task == LOADER else run_target)(args, cfg, profile)
