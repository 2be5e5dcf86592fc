"""COCO top-down pose model of the paper: UniFormer (last stage only) + SimpleBaseline deconvolution head.

Names follow the official mmpose 0.16 state dict (``backbone.``, ``keypoint_head.deconv_layers.{0..8}``,
``keypoint_head.final_layer``) so that the official checkpoints load with ``strict=True``. Our own code.
"""
import re
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .variants import build_official

NUM_JOINTS = 17
POSE_CONFIGS = tuple(f"top_down_{r}_global_{s}" for r in ("256x192", "384x288", "448x320") for s in ("small", "base"))


class TopDownSimpleHead(nn.Module):
    """3 x [ConvTranspose2d 4x4 stride 2 (256, no bias) + BN + ReLU], then a 1x1 conv to the heatmaps:
    stride 32 -> stride 4. ``deconv_layers`` is one Sequential, so the official indices 0/1/2, 3/4/5, 6/7/8 hold."""

    def __init__(self, in_channels: int = 512, channels: int = 256, num_deconv: int = 3,
                 num_joints: int = NUM_JOINTS):
        super().__init__()
        layers = []
        for i in range(num_deconv):
            layers += [nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, stride=2, padding=1,
                                          output_padding=0, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels, num_joints, 1)
        for m in self.modules():  # SimpleBaseline init: small normal weights, unit BN
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(x))


class TopDown(nn.Module):
    """backbone -> last stage (512 channels, stride 32) -> heatmaps (17 x H/4 x W/4)."""

    def __init__(self, backbone: nn.Module, keypoint_head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.keypoint_head = keypoint_head

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.keypoint_head(self.backbone(img)[-1])


def joints_mse_loss(heatmaps: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """mmpose JointsMSELoss(use_target_weight=True): mean squared error of weight-masked heatmaps, averaged
    per joint then over joints (no 0.5 factor)."""
    w = weight.reshape(*weight.shape[:2], 1, 1)
    return F.mse_loss(heatmaps * w, target * w)


def pose_input_size(config_name: str):
    """(width, height) of the crops of ``top_down_<H>x<W>_...``, the order mmpose's ``image_size`` uses."""
    h, w = map(int, re.match(r"top_down_(\d+)x(\d+)_", config_name).groups())
    return w, h


def build_pose_model(config_name: str, **backbone_kwargs) -> TopDown:
    """The model of an official pose config (``top_down_256x192_global_small`` ...)."""
    if config_name not in POSE_CONFIGS:
        raise KeyError(f"unknown pose config {config_name!r}; known: {', '.join(POSE_CONFIGS)}")
    size = config_name.rsplit("_", 1)[1]
    backbone = build_official(f"pose_uniformer_{size}_global", **backbone_kwargs)
    return TopDown(backbone, TopDownSimpleHead(in_channels=backbone.embed_dim[-1]))


def convert_pose_checkpoint(state_dict: Dict[str, torch.Tensor], config_name: str) -> Dict[str, torch.Tensor]:
    """An official mmpose checkpoint (or its ``state_dict``) -> our keys: the 0.16 names are ours; a
    ``state_dict`` wrapper and ``module.`` are removed and mmpose 1.x's ``head.`` is renamed ``keypoint_head.``."""
    if config_name not in POSE_CONFIGS:
        raise KeyError(f"unknown pose config {config_name!r}")
    sd = state_dict.get("state_dict", state_dict)
    out = {}
    for k, v in sd.items():
        k = k[len("module."):] if k.startswith("module.") else k
        out["keypoint_" + k if k.startswith("head.") else k] = v
    return out
