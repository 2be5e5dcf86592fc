"""``uniformer train <dataset>``: train a model with the recipe of params.yaml (smoke or paper profile).

    uniformer train imagenet|kinetics400|kinetics600|ssv1|ssv2|ade20k|coco|coco_pose [--model NAME[.TAG]] [--profile smoke|paper]
                    [--data-root DIR] [--out DIR] [--resume] [--checkpoint PATH] [key=value ...]
    torchrun --nproc_per_node N -m uniformer.cli train kinetics400 ...     # DistributedDataParallel

The recipe is ``train.<dataset>.<profile>``, the data ``data.<dataset>.<profile>``; the data set's task
(``uniformer.tasks``) builds the model, loss and metrics, its adapter the training and validation sets.
Video: clips follow the model's pretrained cfg (``--model uniformer_small_video.k400_8x8``: 8 frames, stride
8), overridden by the recipe's ``clip`` block; initial weights come from ``--checkpoint`` or the recipe's
``init.checkpoint`` -- an ImageNet checkpoint of the image family is inflated to 3D (``init.inflate``: mean,
the official rule), a video checkpoint of another data set is fine-tuned (new classifier).

Outputs in ``--out`` (default ``results/train/<table>/<model>/<profile>``): ``config.yaml`` (resolved config),
``last.pth`` (after every epoch, atomically: model, optimizer, scheduler, grad scaler, EMA, RNG states,
counters), ``best.pth`` (best val top-1: weights + config) and, at the end, ``metrics.json``. Per-epoch
metrics go to MLflow (run ``train/<model>/<profile>`` in experiment ``<table>``).

Reproducibility: every process seeds python / numpy / torch with ``seed + rank``; the order and
augmentation of each epoch come from a loader seed drawn from a data generator seeded with ``seed``, so a
run stopped after any epoch and resumed with ``--resume`` (all RNG states restored from ``last.pth``)
ends bitwise-identical to an uninterrupted run on CPU.
"""
import argparse
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
import yaml
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import ConfigError, active_profile, add_settings_argument, code_fingerprint, config_hash, load_params
from ..data.loader import CheckedDataset, CollateChecked, build_loader, stack
from ..io import write_json, write_text
from ..provenance import stamp
from ..tasks import data_source, dataset_names, get_dataset, open_data
from ..tracking import start_run
from . import distributed as D
from .checkpointing import (capture_rng_state, load_model_weights, load_training_checkpoint, restore_rng_state,
                            save_checkpoint)
from .evaluate import evaluate_counts
from .recipe import (autocast_dtype, build_ema, build_optimizer, build_scheduler, global_batch,
                     resolve_train_config, scaled_lr)


def _accept_trailing_overrides(p: argparse.ArgumentParser) -> None:
    """Let ``key=value`` overrides follow options (``train imagenet --model x epochs=3 lr=1e-3``).

    argparse fills a ``nargs='*'`` positional only once, from the first run of positionals; later
    ``key=value`` words come back as unknown arguments, which this collects into ``args.overrides``.
    """
    parse_known = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        ns, extra = parse_known(args, namespace)
        more = [a for a in extra if "=" in a and not a.startswith("-")]
        ns.overrides = list(getattr(ns, "overrides", None) or []) + more
        return ns, [a for a in extra if a not in more]

    p.parse_known_args = parse_known_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=dataset_names(), help="data set (and recipe) to train on")
    p.add_argument("--model", help="registered model name, optionally with a tag (uniformer_small_tl.in1k_384); "
                                   "default: the profile's model")
    add_settings_argument(p)
    p.add_argument("--data-root", help="data set root (default: params.yaml data.<table>.<profile>.root)")
    p.add_argument("--out", help="output folder (default: results/train/<table>/<model>/<profile>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/last.pth if there is one (else start a new run)")
    p.add_argument("--checkpoint", help="initial weights (ours or official; default: the recipe's init.checkpoint "
                                        "for video); a classifier of another size is re-initialised (fine-tuning)")
    p.add_argument("--stop-after-epoch", type=int, default=None, metavar="K",
                   help="exit after epoch K's checkpoint, as if killed there (for resume tests)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--params", help="params file (default: $UNIFORMER_PARAMS or ./params.yaml)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. epochs=3 lr=1e-3")
    _accept_trailing_overrides(p)


def run(args) -> int:
    params = load_params(args.params)
    profile = active_profile(params, args.profile)
    cfg = resolve_train_config(params, args.dataset, profile, args.model, args.overrides)
    train(cfg, dataset=args.dataset, profile=profile, data_root=args.data_root, out=args.out, resume=args.resume,
          init_checkpoint=args.checkpoint, stop_after_epoch=args.stop_after_epoch, device=args.device,
          progress=not args.no_progress, provenance=stamp("train", params, profile, args.dataset, args.overrides))
    return 0


# --- helpers ----------------------------------------------------------------------------------------------
def default_out(table: str, model: str, profile: str) -> Path:
    return Path("results") / "train" / table / model / profile


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


class _Shard:
    """Every ``world``-th sample from ``rank`` (distributed eval without the padding of DistributedSampler)."""

    def __init__(self, dataset, rank: int, world: int):
        self.dataset, self.indices = dataset, list(range(rank, len(dataset), world))

    def __len__(self):
        return len(self.indices)

    def get_checked(self, i):
        return self.dataset.get_checked(self.indices[i])

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


def make_train_loader(dataset, cfg: Dict[str, Any], epoch_seed: int, dist_info, epoch: int, collate=stack):
    """The loader of one epoch: order and worker seeds are functions of ``epoch_seed`` (and the rank);
    ``collate``: the task's batching (``Task.collate``)."""
    bs, workers = int(cfg["batch_size"]), int(cfg["workers"])
    if cfg.get("repeated_aug"):
        # Repeated augmentation (DeiT's RASampler = timm's RepeatAugSampler), 3 repeats per image.



        # the sampler shuffles with a generator seeded by its "epoch": give it the epoch's loader seed
        sampler = RepeatAugSampler(dataset, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True,
                                   selected_round=256 if len(dataset) >= 256 * dist_info.world_size else 0)
        sampler.set_epoch(epoch_seed)
        gen = torch.Generator().manual_seed(epoch_seed + 1_000_003 * dist_info.rank)
        return DataLoader(CheckedDataset(dataset), batch_size=bs, sampler=sampler, num_workers=workers,
                          collate_fn=CollateChecked(collate), drop_last=True, generator=gen,
                          pin_memory=dist_info.device.type == "cuda")
    loader = build_loader(dataset, bs, shuffle=True, num_workers=workers, seed=epoch_seed,
                          distributed=dist_info.distributed, drop_last=True,
                          pin_memory=dist_info.device.type == "cuda", collate=collate)
    if dist_info.distributed:
        loader.sampler.set_epoch(epoch)
        loader.generator.manual_seed(epoch_seed + 1_000_003 * dist_info.rank)  # worker seeds differ per rank
    return loader


# --- resuming -------------------------------------------------------------------------------------------
def _resume_key(cfg: Dict[str, Any]) -> str:
    """What a checkpoint must have been made with to be continued: the recipe (not where the data lies) and the
    training code. Anything else is a different run, and continuing it would return the old one's results."""
    recipe = {**cfg, "data": {k: v for k, v in cfg["data"].items() if k != "root"}}
    return f"recipe {config_hash(recipe)}, code {code_fingerprint()}"


def _resumable(path: Path, resume_key: str, world: int):
    """``(checkpoint or None, why)``: continue ``path`` only if the same recipe and code wrote it."""
    if not path.is_file():
        return None, "no checkpoint yet, starting a new run"
    ckpt = load_training_checkpoint(path)
    if ckpt.get("resume_key") != resume_key:
        return None, (f"not resumed: it was written by another recipe or code ({ckpt.get('resume_key') or 'unknown'}; "
                      f"now {resume_key}); starting afresh")
    if ckpt.get("world_size", world) != world:
        raise ConfigError(f"{path} was written by {ckpt['world_size']} processes; resume with the same number "
                          f"(now {world}) to keep the recipe and data order, or delete it to start afresh")
    return ckpt, f"resuming after epoch {ckpt['epoch']}"


# --- training ---------------------------------------------------------------------------------------------
def train(cfg: Dict[str, Any], dataset: str = "imagenet", profile: str = "smoke", data_root: Optional[str] = None,
          out: Optional[str] = None, resume: bool = False, init_checkpoint: Optional[str] = None,
          stop_after_epoch: Optional[int] = None, device: str = "auto", progress: bool = True,
          provenance: Optional[Dict[str, str]] = None) -> Optional[Dict[str, Any]]:
    """Train with the resolved ``cfg``; returns the final metrics (None if stopped early by ``stop_after_epoch``)."""
    t_start = time.perf_counter()
    table, task = get_dataset(dataset).table, get_dataset(dataset).task
    primary = task.metrics[0]  # higher is better: picks best.pth
    dist_info = D.init_distributed(device)
    rank, world, dev = dist_info.rank, dist_info.world_size, dist_info.device
    show = progress and dist_info.is_main
    try:
        out_dir = Path(out) if out else default_out(table, cfg["model"], profile)
        ckpt = None
        resume_key = _resume_key(cfg)
        if resume:
            ckpt, why = _resumable(out_dir / "last.pth", resume_key, world)
            if dist_info.is_main:
                print(f"{out_dir / 'last.pth'}: {why}", file=sys.stderr)
        root = Path(data_root or cfg["data"]["root"])
        cfg["data"]["root"] = str(root)
        data = open_data(dataset, root, cfg["data"])
        if dist_info.is_main:
            data.ensure()
        D.barrier()

        seed_everything(int(cfg["seed"]) + rank, bool(cfg["deterministic"]))
        amp_dtype = autocast_dtype(cfg["amp"])
        accum = int(cfg["accum_steps"])

        # classes first (the model needs their number), then the sets (their transforms need the model's cfg)
        classes = data.classes()
        num_classes = len(classes)
        model = task.build_model(cfg, num_classes)
        init_cfg = cfg.get("init") or {}  # a recipe key of the tasks that start from another checkpoint (video)
        init = init_checkpoint or init_cfg.get("checkpoint")
        if init and ckpt is None:
            taken = load_model_weights(model, init, weights="model", allow_new_head=True,
                                       inflate=init_cfg.get("inflate"))
            if dist_info.is_main:
                print(f"initial weights: {init} ({taken})", file=sys.stderr)
        train_set = data.train_set(cfg, model, classes)
        val_set = data.val_set(cfg, model, classes)
        model.to(dev)
        if cfg["channels_last"]:
            model.to(memory_format=getattr(torch, task.channels_last))
        ema = build_ema(cfg, model)
        net = model
        if dist_info.distributed:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[dev.index] if dev.type == "cuda" else None,
                find_unused_parameters=task.has_unused_parameters(model))

        lr = scaled_lr(cfg, world)
        optimizer = build_optimizer(cfg, model, lr)
        steps_per_epoch = len(make_train_loader(train_set, cfg, 0, dist_info, 0, task.collate))
        if steps_per_epoch == 0:
            raise ConfigError(f"{root}/train: {len(train_set)} images are less than one batch of "
                              f"{cfg['batch_size']} x {world} processes; lower batch_size")
        updates_per_epoch = math.ceil(steps_per_epoch / accum)
        scheduler, total_epochs = build_scheduler(cfg, optimizer, updates_per_epoch)
        scaler = torch.amp.GradScaler(dev.type, enabled=cfg["amp"] == "fp16")
        loss_fn = task.build_loss(cfg, num_classes)
        mixup_fn = task.build_mixup(cfg, num_classes)
        data_rng = torch.Generator().manual_seed(int(cfg["seed"]))

        eval_loader = build_loader(_Shard(val_set, rank, world) if dist_info.distributed else val_set,
                                   int(cfg["eval_batch_size"]), shuffle=False, num_workers=int(cfg["workers"]),
                                   seed=0, pin_memory=dev.type == "cuda", collate=task.collate)

        state = dict(epoch=0, num_updates=0, history=[], best_top1=-1.0, best_epoch=0, skipped_samples=0,
                     images_seen=0, train_time_s=0.0)
        if ckpt is not None:
            # after building the scheduler: creating it resets the optimizer's lr to the warm-up value
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            if ema is not None:
                ema.module.load_state_dict(ckpt["model_ema"])
            state.update({k: ckpt[k] for k in state})
        start_epoch = int(state["epoch"])

        resolved = {**cfg, "lr": lr, "global_batch": global_batch(cfg, world), "world_size": world,
                    "num_classes": num_classes, "epochs_total": total_epochs, "classes": classes,
                    "class_index": data.class_index_desc(), "initial_weights": init,
                    **data.train_protocol(cfg, model, train_set)}  # input size; video: the clip protocol
        if dist_info.is_main:
            write_text(out_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        manifest = data.manifest()
        tags = {"dataset": dataset, "dataset_manifest": manifest, "data_source": data_source(dataset, root),
                "world_size": world, "out_dir": str(out_dir)}
        if ckpt is not None:
            tags["resumed_from_epoch"] = start_epoch

        result = None
        with start_run(table=table, stage="train", model=cfg["model"], profile=profile,
                       params={k: v for k, v in resolved.items() if k != "classes"}, tags=tags,
                       enabled=dist_info.is_main) as mlrun:
            if ckpt is not None:
                # Last thing before the loop, so nothing in the set-up (model init, MLflow) shifts the streams.
                restore_rng_state(ckpt["rng"][rank], data_rng)
            epochs_bar = tqdm(range(start_epoch, total_epochs), initial=start_epoch, total=total_epochs,
                              desc=f"train {cfg['model']}", disable=not show, dynamic_ncols=True)
            for epoch in epochs_bar:
                epoch_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=data_rng))
                loader = make_train_loader(train_set, cfg, epoch_seed, dist_info, epoch, task.collate)
                stats = _train_one_epoch(task, net, model, loader, loss_fn, optimizer, scheduler, scaler, ema, mixup_fn,
                                         state, cfg, dev, amp_dtype, accum, epoch, total_epochs, show)
                del loader  # shuts its workers down
                epoch_lr = optimizer.param_groups[0]["lr"]
                scheduler.step(epoch + 1)
                # epoch statistics over all processes
                loss_sum, n_seen, skipped, t_epoch = D.all_reduce_sum(
                    [stats["loss_sum"], stats["images"], stats["skipped"], stats["time"]], dev)
                state["skipped_samples"] += int(skipped)
                state["images_seen"] += int(n_seen)
                state["train_time_s"] += t_epoch / world
                entry = {"epoch": epoch + 1, "train_loss": loss_sum / max(n_seen, 1),
                         "lr": epoch_lr, "img_per_s": n_seen / max(t_epoch / world, 1e-9)}
                last = epoch + 1 == total_epochs
                if (epoch + 1) % int(cfg["eval_every"]) == 0 or last:
                    eval_model = ema.module if (ema is not None and cfg["eval_ema"]) else model
                    meter, val_skipped, _ = evaluate_counts(eval_model, eval_loader, dev,
                                                            task.meter(num_classes, val_set), amp_dtype,
                                                            bool(cfg["channels_last"]), desc="val", progress=show,
                                                            task=task)
                    meter = D.reduce_meter(meter, dev)
                    val_skipped = int(D.all_reduce_sum([val_skipped], dev)[0])
                    s = meter.summary()
                    entry.update({f"val_{k}": s[k] for k in task.metrics}, val_skipped_samples=val_skipped)
                    if s[primary] > state["best_top1"]:  # the task's first metric ("best_top1": checkpoint key)
                        state["best_top1"], state["best_epoch"] = s[primary], epoch + 1
                        if dist_info.is_main:
                            save_checkpoint(out_dir / "best.pth", {
                                "epoch": epoch + 1, "model": model.state_dict(),
                                "model_ema": ema.module.state_dict() if ema is not None else None,
                                "config": cfg, f"val_{primary}": s[primary]})
                state["history"].append(entry)
                state["epoch"] = epoch + 1
                rng_states = D.all_gather_object(capture_rng_state(data_rng))
                if dist_info.is_main:
                    save_checkpoint(out_dir / "last.pth", {
                        **state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                        "model_ema": ema.module.state_dict() if ema is not None else None,
                        "rng": rng_states, "config": cfg, "world_size": world, "resume_key": resume_key})
                    if mlrun is not None:
                        mlrun.log_metrics({k: v for k, v in entry.items() if k != "epoch"}, step=epoch + 1)
                        mlrun.log_metrics({"skipped_samples": state["skipped_samples"]}, step=epoch + 1)
                    epochs_bar.set_postfix({"loss": f"{entry['train_loss']:.3f}",
                                            primary: f"{entry.get(f'val_{primary}', float('nan')):.1f}"})
                D.barrier()
                if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and not last:
                    if dist_info.is_main:
                        print(f"stopping after epoch {epoch + 1} (--stop-after-epoch); continue with --resume",
                              file=sys.stderr)
                        if mlrun is not None:
                            mlrun.set_tags({"stopped_after_epoch": epoch + 1})
                    return None
            epochs_bar.close()

            final = state["history"][-1]
            result = {
                "table": table, "dataset": dataset, "model": cfg["model"], "profile": profile,
                "provenance": provenance, "epochs": state["epoch"],
                "train_loss": final["train_loss"], **{f"val_{k}": final.get(f"val_{k}") for k in task.metrics},
                f"best_val_{primary}": state["best_top1"], "best_epoch": state["best_epoch"],
                "num_classes": num_classes, f"chance_{primary}": task.chance_level(num_classes),
                "img_per_s": state["images_seen"] / max(state["train_time_s"], 1e-9),
                "samples_seen": state["images_seen"],  # images / clips trained on (video: x aug.num_sample)
                "skipped_samples": state["skipped_samples"],
                "val_skipped_samples": final.get("val_skipped_samples", 0),
                "train_time_s": state["train_time_s"], "time_s": time.perf_counter() - t_start,
                "lr": lr, "global_batch": global_batch(cfg, world), "world_size": world,
                "eval_weights": "ema" if (ema is not None and cfg["eval_ema"]) else "model",
                "dataset_manifest": manifest, "data_source": tags["data_source"],
                "resumed": ckpt is not None, "class_index": data.class_index_desc(), "history": state["history"],
                **data.train_protocol(cfg, model, train_set),
            }
            if dist_info.is_main:
                write_json(out_dir / "metrics.json", result)
                if mlrun is not None:
                    mlrun.log_metrics({"final_" + k: result[k] for k in (
                        "train_loss", *[f"val_{m}" for m in task.metrics], "img_per_s", "train_time_s", "time_s")
                        if result[k] is not None}, step=state["epoch"])
                    mlrun.log_metrics({"skipped_samples": result["skipped_samples"]}, step=state["epoch"])
                    mlrun.log_artifact(out_dir / "metrics.json")
                    mlrun.log_artifact(out_dir / "config.yaml")
                val = ", ".join(f"{k} {result[f'val_{k}']:.4g}" for k in task.metrics)
                chance = result[f"chance_{primary}"]
                print(f"{out_dir}: {result['epochs']} epochs, train loss {result['train_loss']:.4f}, val {val} "
                      f"(chance {primary} {chance if chance is None else f'{chance:.1f}'}), "
                      f"{result['img_per_s']:.1f} samples/s, "
                      f"{result['skipped_samples']} skipped, {result['time_s']:.0f} s", file=sys.stderr)
        return result
    finally:
        D.cleanup()


def _train_one_epoch(task, net, model, loader, loss_fn, optimizer, scheduler, scaler, ema, mixup_fn, state, cfg, dev,
                     amp_dtype, accum, epoch, total_epochs, show) -> Dict[str, float]:
    """One pass over ``loader`` with gradient accumulation; updates ``state['num_updates']``. The task moves a
    batch to the device and computes its loss (``Task.to_device``, ``Task.train_loss``)."""
    net.train()
    n_steps = len(loader)
    clip = cfg.get("clip_grad")
    loss_sum, images_n, skipped = 0.0, 0, 0
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(total=n_steps, desc=f"epoch {epoch + 1}/{total_epochs}", disable=not show, leave=False,
               dynamic_ncols=True)
    t0 = time.perf_counter()
    for step, (inputs, targets, n_skipped) in enumerate(loader):
        inputs, targets = task.to_device(inputs, targets, dev, bool(cfg["channels_last"]))
        group_start = (step // accum) * accum
        group = min(accum, n_steps - group_start)
        boundary = step + 1 == group_start + group
        sync = net.no_sync() if (D.active() and not boundary and hasattr(net, "no_sync")) else nullcontext()
        with sync:
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss, bs = task.train_loss(net, inputs, targets, loss_fn, mixup_fn)
            if not torch.isfinite(loss):
                raise RuntimeError(f"loss is {loss.item()} at epoch {epoch + 1} step {step + 1}; lower the lr "
                                   "or switch amp off")
            scaler.scale(loss / group).backward()
        if boundary:
            if clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(clip))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            state["num_updates"] += 1
            if ema is not None:
                ema.update(model, step=state["num_updates"])
            scheduler.step_update(num_updates=state["num_updates"])
        loss_sum += float(loss.detach()) * bs
        images_n += bs
        skipped += int(n_skipped)
        if show:
            elapsed = time.perf_counter() - t0
            bar.set_postfix(loss=f"{loss_sum / images_n:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                            img_s=f"{images_n / max(elapsed, 1e-9):.1f}", refresh=False)
            bar.update(1)
    bar.close()
    return {"loss_sum": loss_sum, "images": images_n, "skipped": skipped, "time": time.perf_counter() - t0}
