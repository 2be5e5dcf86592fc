"""UniFormer video classifiers: UniFormer-S / B for Kinetics and Something-Something (3D).

Paper: "UniFormer: Unified Transformer for Efficient Spatiotemporal Representation Learning"
(arXiv 2201.04676). A faithful re-implementation of the official SlowFast-based ``Uniformer``
(``video_classification/slowfast/models/uniformer.py``): same function, same state-dict keys, so an
official ``model_state`` checkpoint loads with ``strict=True``.

The network is the image UniFormer made 3D: a (3, 4, 4)/(2, 4, 4) stem (the ONLY temporal
downsampling, T frames -> T/2), (1, 2, 2) patch embeddings, local MHRA with BatchNorm3d, 1x1x1 convs
and a depthwise 5x5x5 conv in stages 1-2, joint spatiotemporal self-attention over all
T/2 x H/s x W/s tokens in stages 3-4, a 3x3x3 depthwise DPE in every block, and a BatchNorm3d +
average-pool + linear head. Input: (B, 3, T, H, W); frames and resolution are input shapes, not
constructor arguments. The official ``SPLIT`` (divided attention) and ``STD`` options are used by
no release and are not implemented.

This module also holds the 3D building blocks shared with the light models
(``uniformer_video_light.py``) and ``inflate_state_dict``, the official 2D -> 3D weight inflation.
"""
import contextlib
from collections import OrderedDict
from functools import partial
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models import register_model
from timm.models._builder import resolve_pretrained_cfg
from timm.models._features import feature_take_indices

from .blocks import Attention, GlobalBlock, drop_path_rates, init_weights
from .cfgs import refuse_download
from .checkpoint import load_checkpoint
from .video_catalog import generate_video_default_cfgs

__all__ = ["UniFormerVideo", "LocalBlock3d", "GlobalBlock3d", "VideoAttention", "inflate_state_dict"]


class VideoAttention(Attention):
    """``blocks.Attention`` with the official ``*_fp32`` option of the light video models.

    ``attn_fp32=True`` runs the attention math (q k^T, softmax, class attention, attn v) with autocast
    disabled, as ``Uniformer_light_fp32`` does; ``qkv`` and ``proj`` still run under autocast. Like the
    official code it does not up-cast q, k, v: under fp16/bf16 autocast they arrive in half precision
    and the products stay in that dtype (only the autocast re-casting, e.g. of softmax, is turned off).
    Outside autocast the flag changes nothing.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, attn_fp32: bool = False):
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.attn_fp32 = attn_fp32

    def _math_ctx(self, x: torch.Tensor):
        if self.attn_fp32 and torch.is_autocast_enabled(x.device.type):
            return torch.autocast(x.device.type, enabled=False)
        return contextlib.nullcontext()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.attn_fp32:
            return super().forward(x)
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        with self._math_ctx(x):
            out = self._attend(q, k, v)
        return self._out(out, B, N, C)

    def forward_with_cls_attn(self, x: torch.Tensor):
        if not self.attn_fp32:
            return super().forward_with_cls_attn(x)
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        with self._math_ctx(x):
            if self.fused_attn:
                cls_attn = ((q[:, :, :1] * k).sum(-1) * self.scale).softmax(dim=-1)
                out = self._attend(q, k, v)
            else:
                attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
                cls_attn = attn[:, :, 0]
                out = self.attn_drop(attn) @ v
            cls_attn = cls_attn.mean(dim=1)
        return self._out(out, B, N, C), cls_attn


class ConvMlp3d(nn.Module):
    """The local blocks' MLP: 1x1x1 conv -> GELU -> 1x1x1 conv (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Conv3d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv3d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LocalBlock3d(nn.Module):
    """Local MHRA block in 3D: DPE (dw 3x3x3), BN3d -> 1x1x1 -> dw 5x5x5 -> 1x1x1, BN3d -> conv MLP.

    Layer scale (``init_values``) gives ``gamma_1``/``gamma_2`` of shape (1, C, 1, 1, 1) as in
    ``Uniformer_light_ls_fp32``.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0,
                 init_values: Optional[float] = None):
        super().__init__()
        self.pos_embed = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm3d(dim)
        self.conv1 = nn.Conv3d(dim, dim, 1)
        self.conv2 = nn.Conv3d(dim, dim, 1)
        self.attn = nn.Conv3d(dim, dim, 5, padding=2, groups=dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.BatchNorm3d(dim)
        self.mlp = ConvMlp3d(dim, int(dim * mlp_ratio), drop=drop)
        if init_values is not None:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(1, dim, 1, 1, 1))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(1, dim, 1, 1, 1))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        y = self.conv2(self.attn(self.conv1(self.norm1(x))))
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        x = x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)
        return x


class GlobalBlock3d(GlobalBlock):
    """Global MHRA block in 3D: DPE (dw 3x3x3), then LN -> self-attention over all T*H*W tokens, LN -> MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, init_values: Optional[float] = None,
                 attn_fp32: bool = False):
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, drop_path, init_values,
                         conv_layer=nn.Conv3d, attn_layer=partial(VideoAttention, attn_fp32=attn_fp32))


class LayerNorm3d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, T, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 4, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 4, 1, 2, 3)


class PatchEmbed3d(nn.Module):
    """Conv3d patch embedding then LayerNorm over channels (eps 1e-5), keys ``proj``, ``norm``.

    Stem: kernel (3, 4, 4), stride (2, 4, 4), padding (1, 0, 0); downsampling: (1, 2, 2) / (1, 2, 2).
    """

    def __init__(self, in_chans: int, embed_dim: int, kernel_size, stride, padding=0):
        super().__init__()
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)
        self.norm = LayerNorm3d(embed_dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


def downsample_embeds(embed_dim) -> List[nn.Module]:
    """patch_embed2..4: non-overlapping (1, 2, 2) conv + LN (no temporal downsampling)."""
    return [PatchEmbed3d(embed_dim[i - 1], embed_dim[i], (1, 2, 2), (1, 2, 2)) for i in range(1, 4)]


def unwrap_clip(x: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
    """Accept SlowFast's one-pathway list ``[clip]`` as well as the clip tensor itself."""
    if isinstance(x, (list, tuple)):
        assert len(x) == 1, f"expected one pathway, got {len(x)}"
        x = x[0]
    assert x.dim() == 5, f"expected a (B, C, T, H, W) clip, got shape {tuple(x.shape)}"
    return x


class UniFormerVideo(nn.Module):
    """UniFormer-S / B for video: four stages (spatial strides 4/8/16/32, temporal stride 2), BN3d + GAP + linear.

    Args:
        depth: blocks per stage.
        embed_dim: channels per stage.
        head_dim: channels per attention head in the global stages (heads = dim // head_dim).
        mlp_ratio: MLP hidden ratio.
        num_classes: 400 (Kinetics-400), 600 (Kinetics-600), 174 (Something-Something).
    """

    def __init__(
            self,
            depth=(3, 4, 8, 3),
            embed_dim=(64, 128, 320, 512),
            head_dim: int = 64,
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            num_classes: int = 400,
            in_chans: int = 3,
            global_pool: str = "avg",
            drop_rate: float = 0.0,
            attn_drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
    ):
        super().__init__()
        assert global_pool in ("avg", ""), global_pool
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.embed_dim = list(embed_dim)
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.grad_checkpointing = False

        self.patch_embed1 = PatchEmbed3d(in_chans, embed_dim[0], (3, 4, 4), (2, 4, 4), (1, 0, 0))
        self.patch_embed2, self.patch_embed3, self.patch_embed4 = downsample_embeds(embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = drop_path_rates(depth, drop_path_rate)
        for i in range(2):
            setattr(self, f"blocks{i + 1}", nn.ModuleList([
                LocalBlock3d(embed_dim[i], mlp_ratio, drop=drop_rate, drop_path=dpr[i][j]) for j in range(depth[i])]))
        for i in range(2, 4):
            setattr(self, f"blocks{i + 1}", nn.ModuleList([
                GlobalBlock3d(embed_dim[i], embed_dim[i] // head_dim, mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate,
                              attn_drop=attn_drop_rate, drop_path=dpr[i][j])
                for j in range(depth[i])]))
        self.norm = nn.BatchNorm3d(embed_dim[-1])
        self.head_drop = nn.Dropout(0.0)  # the official video head has no dropout
        self.head = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()

        self.feature_info = [
            dict(num_chs=embed_dim[i], reduction=r, module=f"blocks{i + 1}") for i, r in enumerate((4, 8, 16, 32))]
        self.apply(init_weights)

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(stem=r"^patch_embed1", blocks=[(r"^blocks(\d+)\.(\d+)", None), (r"^patch_embed(\d+)", (0,)),
                                                   (r"^norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def stages(self):
        return [(getattr(self, f"patch_embed{i}"), getattr(self, f"blocks{i}")) for i in range(1, 5)]

    def _run_blocks(self, blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for blk in blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def forward_intermediates(
            self,
            x: Union[torch.Tensor, List[torch.Tensor]],
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCTHW",
            intermediates_only: bool = False,
    ):
        """Stage outputs (B, C_i, T/2, H/s, W/s) for s = 4, 8, 16, 32; ``norm`` applies the final BN to the last."""
        assert output_fmt == "NCTHW", "Output format must be NCTHW."
        x = unwrap_clip(x)
        take_indices, max_index = feature_take_indices(4, indices)
        intermediates = []
        stages = self.stages()[:max_index + 1] if stop_early else self.stages()
        for i, (embed, blocks) in enumerate(stages):
            x = embed(x)
            if i == 0:
                x = self.pos_drop(x)
            x = self._run_blocks(blocks, x)
            if i in take_indices:
                intermediates.append(self.norm(x) if norm and i == 3 else x)
        if intermediates_only:
            return intermediates
        if len(stages) == 4:
            x = self.norm(x)
        return x, intermediates

    def forward_features(self, x: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        x = unwrap_clip(x)
        for i, (embed, blocks) in enumerate(self.stages()):
            x = embed(x)
            if i == 0:
                x = self.pos_drop(x)
            x = self._run_blocks(blocks, x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.flatten(2).mean(-1) if self.global_pool == "avg" else x
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        """x: a (B, 3, T, H, W) clip (or SlowFast's ``[clip]``) -> (B, num_classes) logits."""
        return self.forward_head(self.forward_features(x))


# --- 2D -> 3D inflation ------------------------------------------------------------------------------
def inflate_weight(weight_2d: torch.Tensor, time_dim: int, center: bool = False) -> torch.Tensor:
    """(O, I, kh, kw) -> (O, I, time_dim, kh, kw): repeated and divided by time_dim (official default), or
    (``center=True``) placed in the middle temporal tap with zeros elsewhere."""
    if center:
        weight_3d = weight_2d.new_zeros(weight_2d.shape[:2] + (time_dim,) + weight_2d.shape[2:])
        weight_3d[:, :, time_dim // 2] = weight_2d
        return weight_3d
    return weight_2d.unsqueeze(2).repeat(1, 1, time_dim, *([1] * (weight_2d.dim() - 2))) / time_dim


def inflate_state_dict(state_dict: Dict[str, torch.Tensor], model: nn.Module,
                       center: bool = False) -> Dict[str, torch.Tensor]:
    """Adapt an image (2D) UniFormer state dict to a video model, as the official ``get_pretrained_model``.

    Every entry whose shape differs from the model's and whose 3D shape has more than 2 dims is inflated
    along a new time axis (dim 2): repeated and divided by the temporal kernel size, so a temporally
    constant input gives the 2D response away from the temporal borders. 1x1 convs become 1x1x1 (time 1).
    ``head.*`` (and ``head_cls.*`` of the light models) are dropped when the class count differs.
    Other mismatches are left as they are (``load_checkpoint`` reports them, or skips them with
    ``strict=False``). Use: ``load_checkpoint(model, "uniformer_small_in1k.pth", strict=False,
    filter_fn=inflate_state_dict)`` (strict=False because the dropped head is then missing).
    ``center=True`` is the official ``inflate_weight(center=True)`` variant (unused by the releases).
    """
    own = model.state_dict()
    out = OrderedDict()
    for k, v in state_dict.items():
        target = own.get(k)
        if target is not None and v.shape != target.shape and target.dim() > 2 and v.dim() == target.dim() - 1 \
                and v.shape[:2] == target.shape[:2] and v.shape[2:] == target.shape[3:]:
            v = inflate_weight(v, target.shape[2], center=center)
        out[k] = v
    for head in ("head", "head_cls"):
        w, target = out.get(f"{head}.weight"), own.get(f"{head}.weight")
        if w is not None and target is not None and w.shape[0] != target.shape[0]:
            del out[f"{head}.weight"]
            out.pop(f"{head}.bias", None)
    return out


# --- model creation -----------------------------------------------------------------------------------
def build_video_model(cls, variant: str, pretrained: bool, model_args: dict, kwargs: dict,
                      cfg_to_kwargs=("num_classes",)) -> nn.Module:
    """timm-style creation for the video models.

    timm's ``build_model_with_cfg`` requires a 3-element (C, H, W) ``input_size``; the video cfgs carry
    (C, T, H, W), so the cfg is resolved here and the model built directly. ``cfg_to_kwargs`` are taken
    from the (tagged) pretrained cfg unless passed explicitly (e.g. ``num_classes`` 174 for ``ssv2_*``).
    ``pretrained=True`` needs ``pretrained_cfg_overlay=dict(file=path)`` (any official wrapping).
    """
    refuse_download(variant, pretrained, kwargs)
    if kwargs.pop("features_only", False):
        raise ValueError(f"{variant}: features_only is not supported for video models; "
                         "use model.forward_intermediates(x, intermediates_only=True)")
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.pop("pretrained_cfg", None),
                                 pretrained_cfg_overlay=kwargs.pop("pretrained_cfg_overlay", None)).to_dict()
    kwargs.pop("cache_dir", None)
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    args = dict(model_args)
    args.update(kwargs)
    for name in cfg_to_kwargs:
        if cfg.get(name) is not None:
            args.setdefault(name, cfg[name])
    args.setdefault("in_chans", cfg["input_size"][0])
    model = cls(**args)
    model.pretrained_cfg = model.default_cfg = cfg
    if pretrained:
        if cfg.get("file"):
            load_checkpoint(model, cfg["file"])
        else:
            model.load_state_dict(cfg["state_dict"])
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


MODEL_ARGS = {
    "uniformer_small_video": dict(depth=(3, 4, 8, 3), embed_dim=(64, 128, 320, 512), head_dim=64),
    "uniformer_base_video": dict(depth=(5, 8, 20, 7), embed_dim=(64, 128, 320, 512), head_dim=64),
}

default_cfgs = generate_video_default_cfgs(MODEL_ARGS)


def _create_uniformer_video(variant: str, pretrained: bool = False, **kwargs) -> UniFormerVideo:
    return build_video_model(UniFormerVideo, variant, pretrained, MODEL_ARGS[variant], kwargs)


@register_model
def uniformer_small_video(pretrained=False, **kwargs) -> UniFormerVideo:
    return _create_uniformer_video("uniformer_small_video", pretrained, **kwargs)


@register_model
def uniformer_base_video(pretrained=False, **kwargs) -> UniFormerVideo:
    return _create_uniformer_video("uniformer_base_video", pretrained, **kwargs)
