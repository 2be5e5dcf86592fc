"""The training recipe: resolved config -> optimizer, LR schedule, EMA (the task builds model, loss, Mixup).

Every value comes from params.yaml (``train.<dataset>.<profile>``), then the per-model blocks under its
``models:`` key (``<model>`` then ``<model>.<tag>``, e.g. ``uniformer_small_tl.in1k_384``), then
command-line ``key=value`` overrides. Everything is built with timm's factories (``create_optimizer_v2``,
``create_scheduler_v2``, ``ModelEmaV3``), as the official DeiT-based trainers do; the task of the data set
(``uniformer.tasks``) names its own recipe keys and builds the model, the loss and Mixup
(``tasks.classification``: ``TrainLoss``, ``ClipMixup``), the data adapters the transforms (``data.transforms``).

Learning rate: ``lr = base_lr * global_batch / lr_base_size`` with ``global_batch = batch_size x
world_size x accum_steps`` (official: 5e-4 per 512 = 1e-3 per 1024), unless ``lr`` is set.
"""
import copy
from typing import Any, Dict, Iterable, Optional, Tuple

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3

from ..config import ConfigError, apply_overrides, section
from ..tasks import task_of
from ..tasks.classification import is_token_label_model

# Keys every resolved train config must have (a typo in a per-model block or an override is an error);
# the data set's task adds its own (``Task.recipe_keys``: image transforms, or clip protocol / augmentation / init).
COMMON_KEYS = (
    "model", "model_kwargs", "epochs", "batch_size", "accum_steps", "workers",
    "opt", "base_lr", "lr_base_size", "lr", "weight_decay", "opt_eps", "opt_betas", "momentum", "clip_grad",
    "sched", "sched_on_updates", "warmup_epochs", "warmup_prefix", "warmup_lr", "min_lr", "cooldown_epochs",
    "drop", "drop_path", "smoothing", "mixup", "cutmix", "cutmix_minmax", "mixup_prob", "mixup_switch_prob",
    "mixup_mode", "model_ema", "model_ema_decay", "eval_ema", "amp", "channels_last", "seed",
    "deterministic", "eval_batch_size", "eval_every",
)
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _deep_merge(base: Dict[str, Any], block: Dict[str, Any], where: str) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in block.items():
        if k not in out:
            raise ConfigError(f"params.yaml: {where} sets unknown key '{k}' (known: {sorted(out)})")
        if isinstance(v, dict) and isinstance(out[k], dict) and k != "model_kwargs":
            out[k] = _deep_merge(out[k], v, f"{where}.{k}")
        elif isinstance(v, dict) and k == "model_kwargs":
            out[k] = {**out[k], **v}
        else:
            out[k] = copy.deepcopy(v)
    return out


def model_blocks(name: str) -> Tuple[str, ...]:
    """Per-model blocks applying to ``name``, in order: ``uniformer_small_tl``, ``uniformer_small_tl.in1k_384``."""
    base = name.split(".", 1)[0]
    return (base,) if base == name else (base, name)


def resolve_train_config(params: Dict[str, Any], dataset: str, profile: str, model: Optional[str] = None,
                         overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """``train.<dataset>.<profile>`` + per-model blocks + ``data.<dataset>.<profile>`` (as ``data``) + overrides."""
    cfg = section(params, "train", profile, dataset)
    blocks = cfg.pop("models", None) or {}
    overrides = list(overrides or ())
    # `model=...` as an override picks the per-model blocks too, like --model.
    for item in overrides:
        if item.startswith("model="):
            model = item.split("=", 1)[1]
    overrides = [o for o in overrides if not o.startswith("model=")]
    cfg["model"] = model or cfg.get("model")
    if not cfg["model"]:
        raise ConfigError(f"params.yaml: train.{dataset}.{profile} names no model; pass --model")
    task = task_of(dataset)
    missing = [k for k in COMMON_KEYS + task.recipe_keys if k not in cfg]
    if missing:
        raise ConfigError(f"params.yaml: train.{dataset}.{profile} lacks {', '.join(missing)}")
    applied = []
    for key in model_blocks(cfg["model"]):
        if key in blocks:
            cfg = _deep_merge(cfg, blocks[key] or {}, f"train.{dataset}.{profile}.models.{key}")
            applied.append(key)
    cfg["model_blocks"] = applied
    cfg["data"] = section(params, "data", profile, dataset)
    cfg = apply_overrides(cfg, overrides)
    if cfg["amp"] not in AMP_DTYPES:
        raise ConfigError(f"amp={cfg['amp']!r}: use one of {', '.join(AMP_DTYPES)}")
    if int(cfg["accum_steps"]) < 1:
        raise ConfigError(f"accum_steps={cfg['accum_steps']}: must be >= 1")
    task.check_recipe(cfg, f"train.{dataset}.{profile}")
    _without_token_labels(cfg)
    return cfg


def _without_token_labels(cfg: Dict[str, Any]) -> None:
    """Token-labelling models train their auxiliary head on dense token-label maps (recipe ``token_label``: the
    official NFNet-F6 score maps, ``data.token_labels``). Without them the head would get no loss but still add
    0.5 x its max to every prediction, so it is left out (a plain linear head, no MixToken); the recipe's
    ``model_kwargs`` record it, so evaluation builds the same network and the table's model column says so."""
    kwargs = cfg.setdefault("model_kwargs", {})
    if cfg.get("token_label"):
        return
    if is_token_label_model(cfg["model"]) and "head" not in kwargs:
        kwargs.update(head="linear", mix_token=False)


def global_batch(cfg: Dict[str, Any], world_size: int) -> int:
    return int(cfg["batch_size"]) * int(world_size) * int(cfg["accum_steps"])


def scaled_lr(cfg: Dict[str, Any], world_size: int) -> float:
    """``lr`` if set, else ``base_lr * global_batch / lr_base_size`` (linear scaling rule)."""
    if cfg.get("lr") is not None:
        return float(cfg["lr"])
    return float(cfg["base_lr"]) * global_batch(cfg, world_size) / float(cfg["lr_base_size"])


def autocast_dtype(amp: str) -> Optional[torch.dtype]:
    return AMP_DTYPES[amp]


# --- optimisation ---------------------------------------------------------------------------------------
def build_optimizer(cfg: Dict[str, Any], model: nn.Module, lr: float):
    """timm ``create_optimizer_v2``; no weight decay on biases, norms and ``model.no_weight_decay()``, or, when the
    recipe lists ``no_decay_keys``, on exactly the parameters whose name contains one of them (mmcv's
    ``paramwise_cfg.custom_keys`` with ``decay_mult=0``, as the official detection and UperNet configs: every
    other bias is decayed; ``[]``: every parameter decayed, as mmcv without ``paramwise_cfg``)."""
    kwargs = {}
    if cfg.get("opt_eps") is not None:
        kwargs["eps"] = float(cfg["opt_eps"])
    if cfg.get("opt_betas") is not None:
        kwargs["betas"] = tuple(float(b) for b in cfg["opt_betas"])
    if str(cfg["opt"]).lower() in ("sgd", "momentum", "nesterov", "rmsprop", "rmsproptf", "lamb", "lars"):
        kwargs["momentum"] = float(cfg["momentum"])
    wd = float(cfg["weight_decay"])
    keys = cfg.get("no_decay_keys")
    if keys is not None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        params = [{"params": [p for n, p in named if not any(k in n for k in keys)], "weight_decay": wd},
                  {"params": [p for n, p in named if any(k in n for k in keys)], "weight_decay": 0.0}]
        return create_optimizer_v2([g for g in params if g["params"]], opt=cfg["opt"], lr=lr, weight_decay=wd,
                                   **kwargs)
    return create_optimizer_v2(model, opt=cfg["opt"], lr=lr, weight_decay=wd, **kwargs)


def build_scheduler(cfg: Dict[str, Any], optimizer, updates_per_epoch: int):
    """timm ``create_scheduler_v2`` -> (scheduler, total epochs incl. cool-down).

    ``warmup_prefix``: the decay runs over ``epochs - warmup_epochs`` after the warm-up (SlowFast's
    ``COSINE_AFTER_WARMUP``) instead of over all ``epochs`` (DeiT / timm default); ``epochs`` stays the total.
    """
    prefix = bool(cfg["warmup_prefix"])
    # step milestones (``multistep``) and the decay factor / poly power: recipe keys of the dense tasks only, so
    # the classification recipes keep timm's defaults
    decay = {k: cfg[k] for k in ("decay_milestones", "decay_rate") if cfg.get(k) is not None}
    epochs, warmup = int(cfg["epochs"]), int(cfg["warmup_epochs"])
    if prefix and epochs <= warmup:
        raise ConfigError(f"warmup_prefix with epochs={epochs} <= warmup_epochs={warmup}: no epoch left to decay")
    return create_scheduler_v2(
        optimizer, sched=cfg["sched"], num_epochs=epochs - warmup if prefix else epochs, warmup_prefix=prefix,
        min_lr=float(cfg["min_lr"]), warmup_lr=float(cfg["warmup_lr"]), warmup_epochs=warmup,
        cooldown_epochs=int(cfg["cooldown_epochs"]), step_on_epochs=not cfg["sched_on_updates"],
        updates_per_epoch=updates_per_epoch, **decay)


def build_ema(cfg: Dict[str, Any], model: nn.Module):
    """timm ``ModelEmaV3`` of the (unwrapped, on-device) model, or None."""
    if not cfg["model_ema"]:
        return None
    return ModelEmaV3(model, decay=float(cfg["model_ema_decay"]))
