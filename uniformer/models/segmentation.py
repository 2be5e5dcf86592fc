"""ADE20K segmentors of the paper: UperNet and Semantic FPN on the dense UniFormer backbones.

Module names and order follow the official mmseg 0.13 state dict (``backbone.``, ``neck.``, ``decode_head.``,
``auxiliary_head.``; conv+BN blocks as ``.conv`` / ``.bn``), so that the official checkpoints load with
``strict=True`` after at most a prefix mapping (``convert_segmentation_checkpoint``). Our own code.
"""
import math
import re
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .variants import build_official

NUM_CLASSES = 150  # ADE20K with reduce_zero_label


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Every resize in the published heads and protocol: bilinear, align_corners=False."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Module):
    """mmcv ConvModule with BN: keys ``conv.weight`` (no bias, BN follows) and ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)  # SyncBN in training; same keys
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class PlainConv(nn.Module):
    """mmcv ConvModule without norm or activation: keys ``conv.weight`` / ``conv.bias`` (FPN neck)."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)

    def forward(self, x):
        return self.conv(x)


class _ClsSeg(nn.Module):
    """mmseg BaseDecodeHead: ``conv_seg`` is created first (first in the state dict), Dropout2d(0.1) before it."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(0.1)

    def cls_seg(self, x):
        return self.conv_seg(self.dropout(x))


class UPerHead(_ClsSeg):
    """PPM (pool 1/2/3/6) on the last stage + FPN fusion of all stages at ``channels`` (512)."""

    def __init__(self, in_channels: Sequence[int], channels: int = 512, pool_scales=(1, 2, 3, 6),
                 num_classes: int = NUM_CLASSES):
        super().__init__(channels, num_classes)
        # psp_modules.i = [AdaptiveAvgPool2d, ConvModule]: the conv sits at index 1 in the official keys
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvBNReLU(in_channels[-1], channels, 1)) for s in pool_scales)
        self.bottleneck = ConvBNReLU(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3)

    def psp_forward(self, x):
        pooled = [resize(m(x), x.shape[2:]) for m in self.psp_modules]
        return self.bottleneck(torch.cat([x] + pooled, dim=1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)] + [self.psp_forward(inputs[-1])]
        for i in range(len(laterals) - 1, 0, -1):  # top-down path
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        outs = [outs[0]] + [resize(o, outs[0].shape[2:]) for o in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class FCNHead(_ClsSeg):
    """Auxiliary head on stage 3 (one 3x3 conv to 256): trained with weight 0.4, unused at test."""

    def __init__(self, in_channels: int, channels: int = 256, in_index: int = 2, num_classes: int = NUM_CLASSES):
        super().__init__(channels, num_classes)
        self.in_index = in_index
        self.convs = nn.Sequential(ConvBNReLU(in_channels, channels, 3))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self.convs(inputs[self.in_index]))


class FPNNeck(nn.Module):
    """mmseg FPN(out_channels=256, num_outs=4): 1x1 laterals, nearest top-down, 3x3 outputs, no extra level."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256):
        super().__init__()
        self.lateral_convs = nn.ModuleList(PlainConv(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(PlainConv(out_channels, out_channels, 3) for _ in in_channels)

    def forward(self, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                                              mode="nearest")
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals)]


class FPNHead(_ClsSeg):
    """Semantic FPN head: branch i has max(1, log2(stride/4)) conv blocks, each (except at stride 4) followed
    by x2 bilinear upsampling (``scale_heads.i.{0,2,4}``, the odd indices are the parameter-free upsamplers)."""

    def __init__(self, in_channels: int = 256, channels: int = 128, feature_strides=(4, 8, 16, 32),
                 num_classes: int = NUM_CLASSES):
        super().__init__(channels, num_classes)
        self.scale_heads = nn.ModuleList()
        for stride in feature_strides:
            layers = []
            for k in range(max(1, int(math.log2(stride) - math.log2(feature_strides[0])))):
                layers.append(ConvBNReLU(in_channels if k == 0 else channels, channels, 3))
                if stride != feature_strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        out = self.scale_heads[0](inputs[0])
        for head, x in zip(self.scale_heads[1:], inputs[1:]):
            out = out + resize(head(x), out.shape[2:])
        return self.cls_seg(out)


class Segmentor(nn.Module):
    """mmseg EncoderDecoder: backbone (+ neck) + decode head (+ auxiliary head, training only)."""

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, neck: Optional[nn.Module] = None,
                 auxiliary_head: Optional[nn.Module] = None):
        super().__init__()
        self.backbone = backbone
        if neck is not None:
            self.neck = neck
        self.decode_head = decode_head
        if auxiliary_head is not None:
            self.auxiliary_head = auxiliary_head

    def extract_feat(self, img):
        feats = self.backbone(img)
        return self.neck(feats) if hasattr(self, "neck") else feats

    def forward(self, img: torch.Tensor, heads: bool = False):
        """Logits at the input size (head output at stride 4, bilinearly upsampled); ``heads``: the training
        outputs of ``forward_train`` (through ``forward`` so DistributedDataParallel sees the call)."""
        if heads:
            return self.forward_train(img)
        return resize(self.decode_head(self.extract_feat(img)), img.shape[2:])

    def forward_train(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Decode (and auxiliary) logits at stride 4 (resp. 16); the loss upsamples them to the label size."""
        feats = self.extract_feat(img)
        out = {"decode": self.decode_head(feats)}
        if hasattr(self, "auxiliary_head"):
            out["aux"] = self.auxiliary_head(feats)
        return out


AUX_WEIGHT = 0.4  # the official configs' auxiliary FCNHead loss weight


def segmentation_loss(out: Dict[str, torch.Tensor], label: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Training loss of ``Segmentor.forward_train``: each head's logits bilinearly resized to the label size,
    cross-entropy averaged over ALL pixels (ignored ones count as 0: mmseg 0.13 had no ``avg_non_ignore``),
    auxiliary x 0.4."""
    loss = 0.0
    for name, logits in out.items():
        ce = F.cross_entropy(resize(logits, label.shape[-2:]), label.long(), ignore_index=ignore_index,
                             reduction="none").mean()
        loss = loss + (AUX_WEIGHT if name == "aux" else 1.0) * ce
    return loss


# --- builders by official config name ----------------------------------------------------------------------
_NAME = re.compile(r"^(upernet|fpn)_(?:(global|hybrid)_(small|base)|(xxs|xs))(?:__test_config_(g|h32|w32))?$")
SEG_CONFIGS = tuple(
    [f"upernet_{a}_{s}" for a in ("global", "hybrid") for s in ("small", "base")]
    + [f"upernet_global_{s}__test_config_{t}" for s in ("small", "base") for t in ("g", "h32", "w32")]
    + [f"fpn_{a}_{s}" for a in ("global", "hybrid") for s in ("small", "base")]
    + [f"fpn_global_{s}__test_config_{t}" for s in ("small", "base") for t in ("g", "h32", "w32")]
    + ["fpn_xxs", "fpn_xs"])


def backbone_stem(config_name: str) -> str:
    """The backbone manifest stem of an official seg config: training configs of the hybrid models use
    hybrid windows of 14, ``test_config_{g,h32,w32}`` evaluate the global checkpoint as global / hybrid-32 /
    window-32, the light FPN models use the light trunks."""
    m = _NAME.match(config_name)
    if m is None:
        raise KeyError(f"unknown segmentation config {config_name!r}; known: {', '.join(SEG_CONFIGS)}")
    _, attention, size, light, test = m.groups()
    if light:
        return f"seg_uniformer_{light}_light"
    mode = test if test in ("h32", "w32") else ("h14" if attention == "hybrid" else "global")
    return f"seg_uniformer_{size}_{mode}"


def build_segmentor(config_name: str, num_classes: int = NUM_CLASSES, **backbone_kwargs) -> Segmentor:
    """The segmentor of an official config (e.g. ``upernet_global_small``, ``upernet_global_small__test_config_h32``,
    ``fpn_xxs``), with the official checkpoint's keys and shapes."""
    backbone = build_official(backbone_stem(config_name), **backbone_kwargs)
    dims = list(backbone.embed_dim) if hasattr(backbone, "embed_dim") else _stage_dims(backbone)
    if config_name.startswith("upernet"):
        return Segmentor(backbone, UPerHead(dims, num_classes=num_classes),
                         auxiliary_head=FCNHead(dims[2], num_classes=num_classes))
    return Segmentor(backbone, FPNHead(num_classes=num_classes), neck=FPNNeck(dims))


def _stage_dims(backbone: nn.Module) -> List[int]:
    """Channels of norm1..norm4 (the dense backbone's stage outputs)."""
    return [getattr(backbone, f"norm{i}").weight.shape[0] for i in range(1, 5)]


def convert_segmentation_checkpoint(state_dict: Dict[str, torch.Tensor], config_name: str) -> Dict[str, torch.Tensor]:
    """An official mmseg checkpoint (or its ``state_dict``) -> our keys: identical names; only a
    ``state_dict`` wrapper and a DataParallel ``module.`` prefix are removed. ``config_name`` is checked."""
    backbone_stem(config_name)  # raises on an unknown config
    sd = state_dict.get("state_dict", state_dict)
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
