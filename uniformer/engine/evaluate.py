"""``uniformer eval <dataset>``: top-1 / top-5 / loss / per-class accuracy / throughput of a checkpoint.

    uniformer eval imagenet|kinetics400|kinetics600|ssv1|ssv2|ade20k|coco|coco_pose --checkpoint PATH [--model NAME[.TAG]]
                   [--profile smoke|paper] [--data-root DIR] [--out DIR] [--class-index FILE [FILE]]
                   [--img-size N] [--temporal-clips N] [--spatial-crops N] [--batch-size N]
                   [--precision fp32|bf16] [--channels-last] [--compile] [--weights auto|model|ema]

The checkpoint is ours (``last.pth`` / ``best.pth`` of ``uniformer train``: model and, if recorded, EMA
weights; model name, classes and input protocol come from its config) or an official one (any format
``uniformer.load_checkpoint`` reads; ``--model`` required, with the published tag for video, e.g.
``uniformer_small_video.k400_16x4``, whose pretrained cfg gives frames, stride and test views).

The data set's adapter (``uniformer.tasks``) gives the test set and its protocol, its task the metrics.
Images: the model's published eval transform (resize by ``crop_pct``, centre crop, its mean/std).
Video: every published view of each val video (temporal clips x spatial crops, ``tasks.video_classification``); a
video's scores are its views' logits averaged (the official ``TestMeter`` sums raw logits, no softmax: the
same top-k; the loss is the cross-entropy of the averaged logits). An official video checkpoint is refused without
the class-index file it was trained with (``--class-index`` or ``data.<dataset>.<profile>.class_index``):
its class order is not alphabetical, and any other order silently scores near zero.

Writes ``<out>/metrics.json`` and ``<out>/per_class.csv`` (atomically) and an MLflow run
``eval/<model>/<profile>`` in the experiment of the dataset's table.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from tqdm import tqdm

from ..config import ConfigError, active_profile, add_settings_argument, load_params, section
from ..data.loader import build_loader
from ..io import write_json, write_text
from ..profiling.optimize import optimize_for_inference
from ..provenance import stamp
from ..tasks import Task, data_source, dataset_names, get_dataset, open_data
from ..tracking import start_run
from .checkpointing import checkpoint_state_dict, is_training_checkpoint, load_model_weights, read_any_checkpoint

PRECISIONS = ("fp32", "bf16")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=dataset_names())
    p.add_argument("--checkpoint", required=True, help="our last.pth / best.pth, or an official checkpoint")
    p.add_argument("--model", help="registered model name, video: with its published tag (default: the one "
                                   "recorded in our checkpoint)")
    add_settings_argument(p)
    p.add_argument("--data-root", help="data set root (default: params.yaml data.<dataset>.<profile>.root)")
    p.add_argument("--out", help="output folder (default: results/eval/<table>/<model>/<profile>)")
    p.add_argument("--class-index", nargs="+", metavar="FILE",
                   help="video: class-index file(s) of the checkpoint's class order (default: params.yaml "
                        "data.<dataset>.<profile>.class_index)")
    p.add_argument("--img-size", type=int, help="images: eval resolution (default: training / published)")
    p.add_argument("--crop-pct", type=float, help="images: resize to img_size / crop_pct before the centre crop")
    p.add_argument("--temporal-clips", type=int, help="video: clips per video (default: published)")
    p.add_argument("--spatial-crops", type=int, choices=(1, 3), help="video: crops per clip (default: published)")
    p.add_argument("--batch-size", type=int, help="images, or videos (all their views) per batch")
    p.add_argument("--workers", type=int)
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--channels-last", action="store_true", default=None)
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--weights", choices=("auto", "model", "ema"), default="auto",
                   help="which weights of our checkpoint (auto: EMA if the run evaluated on its EMA)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--params", help="params file (default: $UNIFORMER_PARAMS or ./params.yaml)")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    params = load_params(args.params)
    profile = active_profile(params, args.profile)
    cfg = section(params, "eval", profile, args.dataset)
    for key in ("img_size", "crop_pct", "temporal_clips", "spatial_crops", "batch_size", "workers", "precision",
                "channels_last", "compile"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    data_cfg = section(params, "data", profile, args.dataset)
    if args.class_index:
        data_cfg["class_index"] = [str(Path(p).absolute()) for p in args.class_index]
    flags = [f"{k}={getattr(args, k)}" for k in vars(args) if k in cfg and getattr(args, k) is not None]
    provenance = stamp("eval", params, profile, args.dataset, flags + [f"class_index={args.class_index}"] * bool(
        args.class_index))
    evaluate(args.checkpoint, cfg, data_cfg, dataset=args.dataset, profile=profile, model_name=args.model,
             data_root=args.data_root, out=args.out, weights=args.weights, device=args.device,
             progress=not args.no_progress, provenance=provenance)
    return 0


def evaluate_counts(model, loader, device, meter, amp_dtype=None, channels_last: bool = False,
                    desc: Optional[str] = None, progress: bool = False, task: Task = Task()):
    """(``meter`` updated with every batch, skipped samples, seconds in the model) of ``model`` over ``loader``
    in this process; ``meter`` is the task's accumulator (``Task.meter``), ``task`` moves and predicts a batch
    (the default: one tensor in, the model's output to the meter)."""
    skipped, model_s = 0, 0.0
    model.eval()
    with torch.no_grad():
        for inputs, targets, n_skipped in tqdm(loader, desc=desc, disable=not progress, leave=False,
                                               dynamic_ncols=True):
            inputs, targets = task.to_device(inputs, targets, device, channels_last)
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                outputs = task.predict(model, inputs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            model_s += time.perf_counter() - t0
            meter.update(outputs, targets)
            skipped += int(n_skipped)
    return meter, skipped, model_s


def evaluate(checkpoint: str, cfg: Dict[str, Any], data_cfg: Dict[str, Any], dataset: str = "imagenet",
             profile: str = "smoke", model_name: Optional[str] = None, data_root: Optional[str] = None,
             out: Optional[str] = None, weights: str = "auto", device: str = "auto",
             progress: bool = True, provenance: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    t_start = time.perf_counter()
    table, task = get_dataset(dataset).table, get_dataset(dataset).task
    dev = torch.device("cuda" if (device == "auto" and torch.cuda.is_available()) else
                       ("cpu" if device == "auto" else device))
    obj = read_any_checkpoint(checkpoint)
    ours = is_training_checkpoint(obj)
    train_cfg = (obj.get("config") or {}) if ours else {}
    model_name = model_name or train_cfg.get("model")
    if not model_name:
        raise ConfigError(f"{checkpoint}: not a `uniformer train` checkpoint, so --model is needed "
                          "(e.g. --model uniformer_small, or uniformer_small_video.k400_16x4 for video)")
    state_dict, taken = checkpoint_state_dict(obj, weights)
    if not ours:  # an official file in its framework's layout (mmdet): converted here, loaded strictly below
        converted = task.from_official_layout(state_dict, model_name)
        if converted is not state_dict:
            print(f"{checkpoint}: official layout, converted for {model_name}", file=sys.stderr)
            state_dict, obj = converted, {"state_dict": converted}
    num_classes = task.num_outputs(state_dict, checkpoint)
    model = task.create_model(model_name, num_classes, train_cfg.get("model_kwargs") or {})
    load_model_weights(model, obj, weights=weights)
    del obj, state_dict

    root = Path(data_root or data_cfg["root"])
    data = open_data(dataset, root, data_cfg)
    # ours: the classes it was trained with (checked by the adapter); official: the adapter's published order
    classes = data.eval_classes((train_cfg.get("classes") or data.classes()) if ours else None, checkpoint,
                                num_classes)
    if len(classes) > num_classes:
        raise ConfigError(f"{root}: {len(classes)} classes but the model predicts {num_classes}")
    test_set, protocol = data.test_set(cfg, model, classes, train_cfg)
    loader = build_loader(test_set, int(cfg["batch_size"]), shuffle=False, num_workers=int(cfg["workers"]), seed=0,
                          pin_memory=dev.type == "cuda", collate=task.collate)
    precision = cfg["precision"]
    net = optimize_for_inference(model, precision=precision, channels_last=bool(cfg["channels_last"]),
                                 compile=bool(cfg["compile"]), device=dev)
    t_eval = time.perf_counter()
    meter, skipped, model_s = evaluate_counts(net, loader, dev, task.meter(num_classes, test_set),
                                              desc=f"eval {model_name}", progress=progress, task=task)
    wall_s = time.perf_counter() - t_eval
    s = meter.summary()
    out_dir = Path(out) if out else Path("results") / "eval" / table / model_name / profile
    paper_top1 = None if ours else getattr(model, "pretrained_cfg", {}).get("paper_top1")
    manifest = data.manifest()
    views = protocol.get("views", 1)
    metrics = {
        "table": table, "dataset": dataset, "model": model_name, "profile": profile, "checkpoint": str(checkpoint),
        "provenance": provenance,
        "checkpoint_kind": "ours" if ours else "official", "weights": taken,
        "model_kwargs": train_cfg.get("model_kwargs") or {},  # e.g. a reduced depth: the table's model column says so
        **{k: s[k] for k in task.metrics}, **{k: s[k] for k in task.optional_metrics if k in s},
        "samples": s["samples"],
        "num_classes": num_classes, "classes_in_val": len(classes), "class_index": data.class_index_desc(),
        "skipped_samples": skipped, "img_per_s": s["samples"] / max(wall_s, 1e-9),
        "model_img_per_s": s["samples"] / max(model_s, 1e-9), "views": views,
        "precision": precision, "channels_last": bool(cfg["channels_last"]), "compile": bool(cfg["compile"]),
        **protocol, "batch_size": int(cfg["batch_size"]),
        "device": str(dev), "paper_top1": paper_top1, "dataset_manifest": manifest,
        "data_source": data_source(dataset, root), "time_s": time.perf_counter() - t_start,
    }
    files = task.result_files(meter, classes)  # e.g. per_class.csv
    for name, text in files.items():
        write_text(out_dir / name, text)
    write_json(out_dir / "metrics.json", metrics)
    params = {"checkpoint": str(checkpoint), "weights": taken, "data_root": str(root), **cfg, **protocol,
              "class_index": metrics["class_index"]}
    with start_run(table=table, stage="eval", model=model_name, profile=profile, params=params,
                   tags={"dataset": dataset, "dataset_manifest": manifest, "data_source": metrics["data_source"],
                         "checkpoint_kind": metrics["checkpoint_kind"]}) as mlrun:
        if mlrun is not None:
            mlrun.log_metrics({k: metrics[k] for k in (*task.metrics, *task.optional_metrics, "img_per_s",
                                                       "model_img_per_s", "skipped_samples", "samples")
                               if k in metrics})
            mlrun.log_artifact(out_dir / "metrics.json")
            for name in files:
                mlrun.log_artifact(out_dir / name)
    scores = "  ".join(f"{k} {s[k]:.4g}" for k in (*task.metrics, *task.optional_metrics) if k in s)
    print(f"{model_name} ({taken}, {precision}, {views} view(s)): {scores}  "
          f"{metrics['img_per_s']:.1f} samples/s  -> {out_dir}", file=sys.stderr)
    return metrics
