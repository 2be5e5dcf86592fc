"""The training recipe: resolved config -> model, transforms, Mixup, loss, optimizer, LR schedule, EMA.

Every value comes from params.yaml (``train.<table>.<profile>``), then the per-model blocks under its
``models:`` key (``<model>`` then ``<model>.<tag>``, e.g. ``uniformer_small_tl.in1k_384``), then
command-line ``key=value`` overrides. Everything is built with timm's factories
(``create_transform``, ``Mixup``, ``create_optimizer_v2``, ``create_scheduler_v2``, ``ModelEmaV3``,
``SoftTargetCrossEntropy`` / ``LabelSmoothingCrossEntropy``), as the official DeiT-based trainers do.

Learning rate: ``lr = base_lr * global_batch / lr_base_size`` with ``global_batch = batch_size x
world_size x accum_steps`` (official: 5e-4 per 512 = 1e-3 per 1024), unless ``lr`` is set.

Model outputs in training mode and their loss:

- plain models: logits -> criterion(logits, target);
- light models (``uniformer_xxs/xs``): (pooled logits, class-token logits) -> 0.5 x each (official recipe);
- token-labelling models (``*_tl``): (logits, per-token logits, MixToken box). The per-token (dense) loss
  needs the token-label maps of the official recipe, which this project does not ship; here only the
  class logits are trained, against the class target mixed by MixToken's box area (as the official
  TokenLabelCrossEntropy mixes its class term). The auxiliary head then receives no gradient.
"""
import copy
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..config import ConfigError, apply_overrides, section
from ..data.timm_fixes import patch_timm_posterize

# Keys every resolved train config must have (a typo in a per-model block or an override is an error).
COMMON_KEYS = (
    "model", "model_kwargs", "epochs", "batch_size", "accum_steps", "workers",
    "opt", "base_lr", "lr_base_size", "lr", "weight_decay", "opt_eps", "opt_betas", "momentum", "clip_grad",
    "sched", "sched_on_updates", "warmup_epochs", "warmup_prefix", "warmup_lr", "min_lr", "cooldown_epochs",
    "drop", "drop_path", "smoothing", "mixup", "cutmix", "cutmix_minmax", "mixup_prob", "mixup_switch_prob",
    "mixup_mode", "model_ema", "model_ema_decay", "eval_ema", "amp", "channels_last", "seed",
    "deterministic", "eval_batch_size", "eval_every",
)
# images: timm's transform keys; video: the clip protocol (``datasets.CLIP_KEYS``), the training augmentation
# (``data.video_augment.AUG_KEYS``) and the initial weights
IMAGE_KEYS = ("img_size", "aa", "color_jitter", "train_interpolation", "scale", "ratio", "hflip", "reprob",
              "remode", "recount", "repeated_aug")
VIDEO_KEYS = ("clip", "aug", "init")
REQUIRED_KEYS = COMMON_KEYS + IMAGE_KEYS
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


def resolve_train_config(params: Dict[str, Any], table: str, profile: str, model: Optional[str] = None,
                         overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """``train.<table>.<profile>`` + per-model blocks + ``data.<table>.<profile>`` (as ``data``) + overrides."""
    cfg = section(params, "train", profile, table)
    blocks = cfg.pop("models", None) or {}
    overrides = list(overrides or ())
    # `model=...` as an override picks the per-model blocks too, like --model.
    for item in overrides:
        if item.startswith("model="):
            model = item.split("=", 1)[1]
    overrides = [o for o in overrides if not o.startswith("model=")]
    cfg["model"] = model or cfg.get("model")
    if not cfg["model"]:
        raise ConfigError(f"params.yaml: train.{table}.{profile} names no model; pass --model")
    from .datasets import is_video

    missing = [k for k in COMMON_KEYS + (VIDEO_KEYS if is_video(table) else IMAGE_KEYS) if k not in cfg]
    if missing:
        raise ConfigError(f"params.yaml: train.{table}.{profile} lacks {', '.join(missing)}")
    applied = []
    for key in model_blocks(cfg["model"]):
        if key in blocks:
            cfg = _deep_merge(cfg, blocks[key] or {}, f"train.{table}.{profile}.models.{key}")
            applied.append(key)
    cfg["model_blocks"] = applied
    cfg["data"] = section(params, "data", profile, table)
    cfg = apply_overrides(cfg, overrides)
    if cfg["amp"] not in AMP_DTYPES:
        raise ConfigError(f"amp={cfg['amp']!r}: use one of {', '.join(AMP_DTYPES)}")
    if int(cfg["accum_steps"]) < 1:
        raise ConfigError(f"accum_steps={cfg['accum_steps']}: must be >= 1")
    if is_video(table) and (cfg["init"] or {}).get("inflate") not in (None, "mean", "center"):
        raise ConfigError(f"init.inflate={cfg['init']['inflate']!r}: use mean (the official 2D->3D inflation), "
                          "center or null")
    return cfg


def global_batch(cfg: Dict[str, Any], world_size: int) -> int:
    return int(cfg["batch_size"]) * int(world_size) * int(cfg["accum_steps"])


def scaled_lr(cfg: Dict[str, Any], world_size: int) -> float:
    """``lr`` if set, else ``base_lr * global_batch / lr_base_size`` (linear scaling rule)."""
    if cfg.get("lr") is not None:
        return float(cfg["lr"])
    return float(cfg["base_lr"]) * global_batch(cfg, world_size) / float(cfg["lr_base_size"])


def autocast_dtype(amp: str) -> Optional[torch.dtype]:
    return AMP_DTYPES[amp]


# --- model ----------------------------------------------------------------------------------------------
def build_model(cfg: Dict[str, Any], num_classes: int) -> nn.Module:
    import timm

    from .. import models  # noqa: F401  (registers the UniFormer models)

    kwargs = dict(cfg.get("model_kwargs") or {})
    if cfg.get("img_size"):
        kwargs["img_size"] = int(cfg["img_size"])
    return timm.create_model(cfg["model"], pretrained=False, num_classes=num_classes, drop_rate=float(cfg["drop"]),
                             drop_path_rate=float(cfg["drop_path"]), **kwargs)


def train_img_size(cfg: Dict[str, Any], model: nn.Module) -> int:
    """``img_size`` (video: ``clip.crop_size``) from the config, else the model's published input size."""
    if (cfg.get("clip") or {}).get("crop_size"):
        return int(cfg["clip"]["crop_size"])
    if cfg.get("img_size"):
        return int(cfg["img_size"])
    return int(model.pretrained_cfg["input_size"][-1])


def has_token_labelling(model: nn.Module) -> bool:
    return getattr(model, "aux_head", None) is not None


# --- data transforms ------------------------------------------------------------------------------------
def build_train_transform(cfg: Dict[str, Any], model: nn.Module):
    from timm.data import create_transform, resolve_data_config

    patch_timm_posterize()
    data_cfg = resolve_data_config(model=model)
    size = train_img_size(cfg, model)
    jitter = cfg["color_jitter"]
    return create_transform(
        input_size=size, is_training=True, scale=tuple(cfg["scale"]), ratio=tuple(cfg["ratio"]),
        hflip=float(cfg["hflip"]), color_jitter=jitter if jitter else None, auto_augment=cfg["aa"] or None,
        interpolation=cfg["train_interpolation"], mean=data_cfg["mean"], std=data_cfg["std"],
        re_prob=float(cfg["reprob"]), re_mode=cfg["remode"], re_count=int(cfg["recount"]))


def eval_data_config(model: nn.Module, img_size: Optional[int] = None, crop_pct: Optional[float] = None) -> dict:
    """The published eval pre-processing of ``model`` (timm ``resolve_data_config``), at ``img_size`` if given."""
    from timm.data import resolve_data_config

    data_cfg = resolve_data_config(model=model)
    if img_size:
        data_cfg["input_size"] = (3, int(img_size), int(img_size))
    if crop_pct:
        data_cfg["crop_pct"] = float(crop_pct)
    return data_cfg


def build_eval_transform(model: nn.Module, img_size: Optional[int] = None, crop_pct: Optional[float] = None):
    """Resize to ``size / crop_pct``, centre crop, normalise; interpolation, mean/std from the pretrained cfg."""
    from timm.data import create_transform

    return create_transform(**eval_data_config(model, img_size, crop_pct), is_training=False)


# --- Mixup / loss -----------------------------------------------------------------------------------------
def mixup_active(cfg: Dict[str, Any]) -> bool:
    return float(cfg["mixup"]) > 0 or float(cfg["cutmix"]) > 0 or cfg["cutmix_minmax"] is not None


class ClipMixup:
    """timm ``Mixup`` for clips: ``(B, C, T, H, W)`` is mixed as ``(B, C*T, H, W)``, so every frame of a clip
    gets the same mixing weight and the same CutMix box (timm's CutMix would cut along T and H of a 5-D
    tensor)."""

    def __init__(self, mixup):
        self.mixup = mixup

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        if x.dim() != 5:
            return self.mixup(x, target)
        b, c, t, h, w = x.shape
        x, target = self.mixup(x.reshape(b, c * t, h, w), target)
        return x.reshape(b, c, t, h, w), target


def build_mixup(cfg: Dict[str, Any], num_classes: int):
    """timm ``Mixup`` (it also applies label smoothing to the mixed targets) wrapped for clips, or None."""
    if not mixup_active(cfg):
        return None
    from timm.data import Mixup

    return ClipMixup(Mixup(mixup_alpha=float(cfg["mixup"]), cutmix_alpha=float(cfg["cutmix"]),
                 cutmix_minmax=cfg["cutmix_minmax"], prob=float(cfg["mixup_prob"]),
                 switch_prob=float(cfg["mixup_switch_prob"]), mode=cfg["mixup_mode"],
                 label_smoothing=float(cfg["smoothing"]), num_classes=num_classes))


class TrainLoss(nn.Module):
    """Loss of one training forward, for every UniFormer output form (see the module docstring)."""

    def __init__(self, num_classes: int, smoothing: float, soft_targets: bool):
        super().__init__()
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        self.num_classes, self.smoothing = num_classes, smoothing
        self.soft = SoftTargetCrossEntropy()
        if soft_targets:  # Mixup/CutMix: targets arrive mixed and smoothed
            self.base = self.soft
        elif smoothing > 0:
            self.base = LabelSmoothingCrossEntropy(smoothing=smoothing)
        else:
            self.base = nn.CrossEntropyLoss()

    def mixtoken_target(self, target: torch.Tensor, box, input_hw) -> torch.Tensor:
        """Class target of a MixToken batch: ``lam * y + (1 - lam) * y.flip(0)``, lam = 1 - box area share.

        The box is in stage-1 token units (stride 4 of the input)."""
        from timm.data.mixup import mixup_target

        y1, x1, y2, x2 = (int(v) for v in box)
        h, w = input_hw[0] // 4, input_hw[1] // 4
        lam = 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)
        if target.ndim == 1:
            return mixup_target(target, self.num_classes, lam=lam, smoothing=self.smoothing)
        return target * lam + target.flip(0) * (1.0 - lam)

    def forward(self, output, target: torch.Tensor, input_hw: Sequence[int] = (0, 0)) -> torch.Tensor:
        if isinstance(output, torch.Tensor):
            return self.base(output, target)
        if len(output) == 2:  # light models: pooled head + class-token head, averaged (official recipe)
            return 0.5 * self.base(output[0], target) + 0.5 * self.base(output[1], target)
        if len(output) == 3:  # token labelling, trained on the class logits only (no token-label maps)
            logits, _aux, box = output
            if box is None:
                return self.base(logits, target)
            return self.soft(logits, self.mixtoken_target(target, box, input_hw))
        raise TypeError(f"unexpected model output: tuple of {len(output)}")


def build_loss(cfg: Dict[str, Any], num_classes: int) -> TrainLoss:
    return TrainLoss(num_classes, float(cfg["smoothing"]), soft_targets=mixup_active(cfg))


# --- optimisation ---------------------------------------------------------------------------------------
def build_optimizer(cfg: Dict[str, Any], model: nn.Module, lr: float):
    """timm ``create_optimizer_v2``; no weight decay on biases, norms and ``model.no_weight_decay()``."""
    from timm.optim import create_optimizer_v2

    kwargs = {}
    if cfg.get("opt_eps") is not None:
        kwargs["eps"] = float(cfg["opt_eps"])
    if cfg.get("opt_betas") is not None:
        kwargs["betas"] = tuple(float(b) for b in cfg["opt_betas"])
    if str(cfg["opt"]).lower() in ("sgd", "momentum", "nesterov", "rmsprop", "rmsproptf", "lamb", "lars"):
        kwargs["momentum"] = float(cfg["momentum"])
    return create_optimizer_v2(model, opt=cfg["opt"], lr=lr, weight_decay=float(cfg["weight_decay"]), **kwargs)


def build_scheduler(cfg: Dict[str, Any], optimizer, updates_per_epoch: int):
    """timm ``create_scheduler_v2`` -> (scheduler, total epochs incl. cool-down).

    ``warmup_prefix``: the decay runs over ``epochs - warmup_epochs`` after the warm-up (SlowFast's
    ``COSINE_AFTER_WARMUP``) instead of over all ``epochs`` (DeiT / timm default); ``epochs`` stays the total.
    """
    from timm.scheduler import create_scheduler_v2

    prefix = bool(cfg["warmup_prefix"])
    epochs, warmup = int(cfg["epochs"]), int(cfg["warmup_epochs"])
    if prefix and epochs <= warmup:
        raise ConfigError(f"warmup_prefix with epochs={epochs} <= warmup_epochs={warmup}: no epoch left to decay")
    return create_scheduler_v2(
        optimizer, sched=cfg["sched"], num_epochs=epochs - warmup if prefix else epochs, warmup_prefix=prefix,
        min_lr=float(cfg["min_lr"]), warmup_lr=float(cfg["warmup_lr"]), warmup_epochs=warmup,
        cooldown_epochs=int(cfg["cooldown_epochs"]), step_on_epochs=not cfg["sched_on_updates"],
        updates_per_epoch=updates_per_epoch)


def build_ema(cfg: Dict[str, Any], model: nn.Module):
    """timm ``ModelEmaV3`` of the (unwrapped, on-device) model, or None."""
    if not cfg["model_ema"]:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=float(cfg["model_ema_decay"]))
