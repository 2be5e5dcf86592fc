"""Every UniFormer variant: timm registrations (image, token-labelling, light, video) and the official builders.

Registered names: the official constructor names for the plain and light image models
(``uniformer_small`` ...), ``<official name>_tl`` for the token-labelling file's models (whose defaults
differ, e.g. its ``uniformer_small`` has head_dim 32), ``<name>_video`` / ``<name>_ls_video`` for video.
Resolution (and frames) are inputs; the published checkpoints are pretrained tags
(``uniformer_small_tl.in1k_384``, ``uniformer_small_video.k400_16x4``), see ``cfgs.py`` / ``video_catalog.py``.

``build_official(stem)`` builds, for a state-dict manifest stem (image, ``tl_``, ``video_``, ``det_``,
``seg_``, ``pose_``), the model an official checkpoint of that kind loads into with ``strict=True``.
"""
from typing import Dict

import timm
import torch.nn as nn
from timm.models import build_model_with_cfg, register_model
from timm.models._builder import resolve_pretrained_cfg
from timm.models._features import FeatureGetterNet

from ..reference import VIDEO_DATASETS
from .backbone import UniFormer
from .catalog import manifest_model_name
from .cfgs import generate_default_cfgs_from_paper, refuse_download
from .checkpoint import load_checkpoint
from .video_catalog import generate_video_default_cfgs

LIGHT = ("local", "local", "pruned", "pruned")


def _light(depth, embed_dim, head_dim) -> dict:
    """Light ("hourglass") trunk: conv stem, mlp 3, stage 3 = one full block then pruned ones (keep 0.5, trade-off
    0.5), stage 4 pruned; the class token and its heads."""
    schedule = ((), (), (1,) + (0.5,) * (depth[2] - 1), (0.5,) * depth[3])
    return dict(depth=depth, embed_dim=embed_dim, head_dim=head_dim, mlp_ratio=3.0, mixers=LIGHT, conv_stem=True,
                keep_ratio=schedule, trade_off=schedule, head="class_token")


_S = dict(depth=(3, 4, 8, 3))
_SP = dict(depth=(3, 5, 9, 3), conv_stem=True, conv_downsample=True)  # S-dagger: overlapping conv+BN embeddings
_B = dict(depth=(5, 8, 20, 7))
_TL = dict(head="token_label", mix_token=True)
_XXS = _light((2, 5, 8, 2), (56, 112, 224, 448), 28)
_XS = _light((3, 5, 9, 3), (64, 128, 256, 512), 32)
_VIDEO = dict(ndim=3, head_drop_rate=0.0)  # the official video heads have no dropout
# light video: the dropped tokens' fast update is the layer-scaled residual (no gamma_3); INIT_VALUE 0.1
_LIGHT_VIDEO = dict(_VIDEO, fast_gamma=False, init_values=0.1)

IMAGE_ARGS = {
    # plain ImageNet models (image_classification/models/uniformer.py)
    "uniformer_small": dict(_S, head_dim=64),
    "uniformer_small_plus": dict(_SP, head_dim=32),
    "uniformer_small_plus_dim64": dict(_SP, head_dim=64),
    "uniformer_base": dict(_B, head_dim=64),
    "uniformer_base_ls": dict(_B, head_dim=64, layer_scale="global"),
    # token-labelling models (image_classification/token_labeling/tlt/models/uniformer.py)
    "uniformer_small_tl": dict(_S, head_dim=32, **_TL),
    "uniformer_small_dim64_tl": dict(_S, head_dim=64, **_TL),
    "uniformer_small_plus_tl": dict(_SP, head_dim=32, **_TL),
    "uniformer_small_plus_dim64_tl": dict(_SP, head_dim=64, **_TL),
    "uniformer_base_tl": dict(_B, head_dim=32, **_TL),
    "uniformer_base_dim64_tl": dict(_B, head_dim=64, **_TL),
    "uniformer_large_ls_tl": dict(depth=(5, 10, 24, 7), embed_dim=(128, 192, 448, 640), head_dim=64,
                                  layer_scale="all", **_TL),
    # light models (image_classification/models/uniformer_light.py)
    "uniformer_xxs": _XXS,
    "uniformer_xs": _XS,
}
VIDEO_ARGS = {
    # video_classification/slowfast/models/uniformer.py (S, B)
    "uniformer_small_video": dict(_S, head_dim=64, **_VIDEO),
    "uniformer_base_video": dict(_B, head_dim=64, **_VIDEO),
    # uniformer_light{,_fp32,_ls_fp32}.py: one class; attn_fp32 comes with the pretrained tag
    "uniformer_xxs_video": dict(_XXS, **_LIGHT_VIDEO),
    "uniformer_xs_video": dict(_XS, **_LIGHT_VIDEO),
    "uniformer_xxs_ls_video": dict(_XXS, layer_scale="all", **_LIGHT_VIDEO),
}

default_cfgs = {**generate_default_cfgs_from_paper(IMAGE_ARGS), **generate_video_default_cfgs(VIDEO_ARGS)}


def _create_image(variant: str, pretrained: bool = False, **kwargs) -> UniFormer:
    refuse_download(variant, pretrained, kwargs)
    args = dict(IMAGE_ARGS[variant], **kwargs)
    out_indices = args.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        UniFormer, variant, pretrained, feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **args)


def _create_video(variant: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """timm-style creation for the video models.

    timm's ``build_model_with_cfg`` requires a 3-element (C, H, W) ``input_size``; the video cfgs carry
    (C, T, H, W), so the cfg is resolved here and the model built directly. ``num_classes`` (and the light
    models' ``attn_fp32``) come from the (tagged) pretrained cfg unless passed explicitly (e.g. 174 for
    ``ssv2_*``). ``pretrained=True`` needs ``pretrained_cfg_overlay=dict(file=path)`` (any official wrapping).
    ``features_only=True`` wraps the model in timm's ``FeatureGetterNet`` (``forward_intermediates``).
    """
    refuse_download(variant, pretrained, kwargs)
    features_only = kwargs.pop("features_only", False)
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.pop("pretrained_cfg", None),
                                 pretrained_cfg_overlay=kwargs.pop("pretrained_cfg_overlay", None)).to_dict()
    kwargs.pop("cache_dir", None)
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    args = dict(VIDEO_ARGS[variant], **kwargs)
    for name in ("num_classes", "attn_fp32"):  # attn_fp32: False in every non-light cfg
        if cfg.get(name) is not None:
            args.setdefault(name, cfg[name])
    args.setdefault("in_chans", cfg["input_size"][0])
    model = UniFormer(**args)
    model.pretrained_cfg = model.default_cfg = cfg
    if pretrained:
        if cfg.get("file"):
            load_checkpoint(model, cfg["file"])
        else:
            model.load_state_dict(cfg["state_dict"])
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    if features_only:
        model = FeatureGetterNet(model, out_indices)
        model.pretrained_cfg = model.default_cfg = cfg
    return model


# --- registered image models -------------------------------------------------------------------------
@register_model
def uniformer_small(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_small", pretrained, **kwargs)


@register_model
def uniformer_small_plus(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_small_plus", pretrained, **kwargs)


@register_model
def uniformer_small_plus_dim64(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_small_plus_dim64", pretrained, **kwargs)


@register_model
def uniformer_base(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_base", pretrained, **kwargs)


@register_model
def uniformer_base_ls(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_base_ls", pretrained, **kwargs)


@register_model
def uniformer_small_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_small_tl", pretrained, **kwargs)


@register_model
def uniformer_small_dim64_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_small_dim64_tl", pretrained, **kwargs)


@register_model
def uniformer_small_plus_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_small_plus_tl", pretrained, **kwargs)


@register_model
def uniformer_small_plus_dim64_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_small_plus_dim64_tl", pretrained, **kwargs)


@register_model
def uniformer_base_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_base_tl", pretrained, **kwargs)


@register_model
def uniformer_base_dim64_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_base_dim64_tl", pretrained, **kwargs)


@register_model
def uniformer_large_ls_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_large_ls_tl", pretrained, **kwargs)


@register_model
def uniformer_xxs(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_xxs", pretrained, **kwargs)


@register_model
def uniformer_xs(pretrained=False, **kwargs) -> UniFormer:
    return _create_image("uniformer_xs", pretrained, **kwargs)


# --- registered video models -------------------------------------------------------------------------
@register_model
def uniformer_small_video(pretrained=False, **kwargs) -> UniFormer:
    return _create_video("uniformer_small_video", pretrained, **kwargs)


@register_model
def uniformer_base_video(pretrained=False, **kwargs) -> UniFormer:
    return _create_video("uniformer_base_video", pretrained, **kwargs)


@register_model
def uniformer_xxs_video(pretrained=False, **kwargs) -> UniFormer:
    return _create_video("uniformer_xxs_video", pretrained, **kwargs)


@register_model
def uniformer_xs_video(pretrained=False, **kwargs) -> UniFormer:
    return _create_video("uniformer_xs_video", pretrained, **kwargs)


@register_model
def uniformer_xxs_ls_video(pretrained=False, **kwargs) -> UniFormer:
    return _create_video("uniformer_xxs_ls_video", pretrained, **kwargs)


# --- official dense backbones and manifest stems --------------------------------------------------------
DENSE_TRUNKS = {"small": _S, "base": _B}
LIGHT_TRUNKS = {"xxs": _XXS, "xs": _XS}


def build_dense(size: str, attention: str = "global", window_size: int = 14, out_indices=(0, 1, 2, 3),
                **kwargs) -> UniFormer:
    """An official detection / segmentation / pose backbone: no classifier, LayerNorm ``norm1..norm4`` outputs.

    size: small | base (stage 3 ``attention`` global | window | hybrid, window ``window_size``) or xxs | xs
    (the light trunk, token pruning and class token included; ``attention`` is ignored).
    out_indices: stages returned by ``forward`` (the pose backbone returns only the last: ``(3,)``).
    """
    if size in LIGHT_TRUNKS:
        args = dict(LIGHT_TRUNKS[size])
    else:
        assert attention in ("global", "window", "hybrid"), attention
        args = dict(DENSE_TRUNKS[size], head_dim=64, mixers=("local", "local", attention, "global"),
                    window_size=window_size)
    args.update(head="dense", out_indices=out_indices, **kwargs)
    return UniFormer(**args)


def _video_stem(name: str) -> Dict:
    """``uniformer_small_k400`` -> uniformer_small_video, 400 classes; the light flavours by their class name."""
    for suffix, classes in (("_k400", VIDEO_DATASETS["kinetics400"].num_classes),
                            ("_sthv2", VIDEO_DATASETS["ssv2"].num_classes)):
        if name.endswith(suffix):
            return dict(name=name[:-len(suffix)] + "_video", num_classes=classes)
    light = {"uniformer_xxs_light": ("uniformer_xxs_video", False), "uniformer_xxs_fp32": ("uniformer_xxs_video", True),
             "uniformer_xs_fp32": ("uniformer_xs_video", True), "uniformer_xxs_ls_fp32": ("uniformer_xxs_ls_video", True)}
    model, fp32 = light[name]
    return dict(name=model, num_classes=400, attn_fp32=fp32)


def build_official(stem: str, **kwargs) -> nn.Module:
    """The model an official checkpoint described by manifest ``stem`` loads into with ``strict=True``.

    Stems (the files of tests/data/manifests): ``uniformer_<size>`` (plain / light ImageNet),
    ``tl_uniformer_<size>`` (token labelling), ``video_uniformer_<size>_<k400|sthv2|light|fp32|ls_fp32>``,
    ``det_`` / ``seg_`` / ``pose_uniformer_<size>_<global|h14|h32|w32|light>`` (dense backbones: ``hNN`` hybrid
    with window NN, ``wNN`` windows of NN in every stage-3 block; pose returns only the last stage).
    """
    task, _, rest = stem.partition("_")
    if task == "video":
        args = _video_stem(rest)
        return timm.create_model(args.pop("name"), **args, **kwargs)
    if task not in ("det", "seg", "pose"):
        return timm.create_model(manifest_model_name(stem), **kwargs)
    assert rest.startswith("uniformer_"), stem
    size, mode = rest[len("uniformer_"):].split("_")
    out_indices = (3,) if task == "pose" else (0, 1, 2, 3)
    if mode in ("global", "light"):
        return build_dense(size, "global", out_indices=out_indices, **kwargs)
    attention = {"h": "hybrid", "w": "window"}[mode[0]]
    return build_dense(size, attention, window_size=int(mode[1:]), out_indices=out_indices, **kwargs)

