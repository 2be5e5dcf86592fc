"""Image transforms of a recipe, built with timm's ``create_transform`` (the video twin is ``video_augment``).

Training: RandomResizedCrop, flip, colour jitter, RandAugment / AutoAugment, random erasing, from the
recipe's keys; evaluation: the model's published pre-processing (resize by ``crop_pct``, centre crop, its
mean / std and interpolation), at another resolution if asked.
"""
from typing import Any, Dict, Optional

import torch.nn as nn
from timm.data import create_transform, resolve_data_config

from .timm_fixes import patch_timm_posterize


def train_img_size(cfg: Dict[str, Any], model: nn.Module) -> int:
    """``img_size`` (video: ``clip.crop_size``) from the config, else the model's published input size."""
    if (cfg.get("clip") or {}).get("crop_size"):
        return int(cfg["clip"]["crop_size"])
    if cfg.get("img_size"):
        return int(cfg["img_size"])
    return int(model.pretrained_cfg["input_size"][-1])


def build_train_transform(cfg: Dict[str, Any], model: nn.Module):
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
    data_cfg = resolve_data_config(model=model)
    if img_size:
        data_cfg["input_size"] = (3, int(img_size), int(img_size))
    if crop_pct:
        data_cfg["crop_pct"] = float(crop_pct)
    return data_cfg


def build_eval_transform(model: nn.Module, img_size: Optional[int] = None, crop_pct: Optional[float] = None):
    """Resize to ``size / crop_pct``, centre crop, normalise; interpolation, mean/std from the pretrained cfg."""
    return create_transform(**eval_data_config(model, img_size, crop_pct), is_training=False)
