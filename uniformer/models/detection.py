"""COCO detection / instance segmentation: torchvision's Mask R-CNN around the UniFormer dense backbone.

The official models are mmdet 2.11 configs; torchvision's ``MaskRCNN`` computes the same network, and the
points where its test-time protocol differs from mmdet's (reference dense_protocols.md §2.1) are replaced
here, each by one small function or subclass:

* ``mmcv_rescale_size`` / ``MMDetTransform``: keep-ratio (1333, 800) with mmcv's rounding, resize of the
  uint8-valued image before normalisation;
* ``FixedStrideAnchorGenerator``: fixed strides 4..64 and unrounded base anchors;
* ``AlignedMultiScaleRoIAlign``: RoIAlign ``aligned=True`` with adaptive sampling (``sampling_ratio=0``);
* ``paste_masks_float``: float-box grid-sample paste, binarised with ``>= 0.5``;
* class layout: torchvision keeps background at label 0 (mmdet: last); ``convert.py`` moves the rows.

The Cascade Mask R-CNN RoI head is in ``cascade.py``. Checkpoint conversion is in ``convert.py``.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales

from .variants import build_official

# config name -> backbone manifest stem (tests/data/manifests); the hybrid configs use window 14.
DET_BACKBONES = {"hybrid_small": "det_uniformer_small_h14", "hybrid_base": "det_uniformer_base_h14",
                 "xxs": "det_uniformer_xxs_light", "xs": "det_uniformer_xs_light"}
MASK_RCNN_CONFIGS = ("mask_rcnn_1x_hybrid_small", "mask_rcnn_1x_hybrid_base", "mask_rcnn_3x_ms_hybrid_small",
                     "mask_rcnn_3x_ms_hybrid_base", "mask_rcnn_1x_xxs", "mask_rcnn_1x_xs")
CASCADE_CONFIGS = ("cascade_mask_rcnn_3x_ms_hybrid_small", "cascade_mask_rcnn_3x_ms_hybrid_base")
ANCHOR_STRIDES = (4, 8, 16, 32, 64)
TEST_SCALE = (1333, 800)  # mmdet img_scale (long, short)
MASK_THR = 0.5


# --- backbone + FPN -----------------------------------------------------------------------------------------
class BackboneWithFPN(nn.Module):
    """``body`` (our dense UniFormer, keys unchanged) + ``fpn`` (256 ch, P6 = max-pool k1 s2 of P5, as mmdet's
    ``num_outs=5`` without extra convs); the attribute names are what torchvision's keymap expects."""

    def __init__(self, body: nn.Module, out_channels: int = 256):
        super().__init__()
        self.body = body
        in_channels = [getattr(body, f"norm{i}").weight.shape[0] for i in range(1, 5)]
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def backbone_stem(config_name: str) -> str:
    """``mask_rcnn_1x_hybrid_small`` -> ``det_uniformer_small_h14`` (the backbone manifest of that config)."""
    for suffix, stem in DET_BACKBONES.items():
        if config_name.endswith("_" + suffix):
            return stem
    raise KeyError(f"{config_name}: not an official detection config ({MASK_RCNN_CONFIGS + CASCADE_CONFIGS})")


# --- protocol differences -------------------------------------------------------------------------------------
def mmcv_rescale_size(h: int, w: int, scale: Tuple[int, int] = TEST_SCALE) -> Tuple[int, int]:
    """mmcv ``imrescale`` keep-ratio size: factor min(long/L, short/S), sides rounded with ``int(x + 0.5)``
    (torchvision floors, 1 px smaller for e.g. 480x640)."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def paste_masks_float(masks: torch.Tensor, boxes: torch.Tensor, img_hw: Tuple[int, int],
                      threshold: Optional[float] = MASK_THR) -> torch.Tensor:
    """Paste (N, 1, M, M) mask probabilities into the image as mmdet does: sample at pixel centres over the
    float box (grid_sample, align_corners=False, zeros outside) and binarise with ``>= threshold``
    (torchvision rounds the box, pads the mask by 1 px and its callers use ``> 0.5``). (N, 1, H, W) float."""
    h, w = img_hw
    n = masks.shape[0]
    if n == 0:
        return masks.new_zeros((0, 1, h, w))
    x0, y0, x1, y1 = boxes[:, 0:1], boxes[:, 1:2], boxes[:, 2:3], boxes[:, 3:4]
    ys = torch.arange(h, device=masks.device, dtype=torch.float32) + 0.5
    xs = torch.arange(w, device=masks.device, dtype=torch.float32) + 0.5
    gy = (ys[None] - y0) / (y1 - y0) * 2 - 1  # (N, H)
    gx = (xs[None] - x0) / (x1 - x0) * 2 - 1  # (N, W)
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], dim=3)
    out = F.grid_sample(masks.float(), grid, align_corners=False)
    return out if threshold is None else (out >= threshold).float()


class MMDetTransform(GeneralizedRCNNTransform):
    """Test time as mmdet: resize with mmcv's rounding *before* normalising, the resized image kept on the
    uint8 grid (mmcv resizes the uint8 image; inputs are 0-1 floats of uint8 images), and mmdet's mask paste.
    Training: no resize here; the data pipeline resizes (and flips, ``tasks.detection``) as mmdet's does, so
    its scale policy (single or multi-scale) is the recipe's; normalising and padding to 32 are torchvision's."""

    def normalize(self, image):
        return super().normalize(image) if self.training else image  # eval: normalised in resize()

    def resize(self, image, target=None):
        if self.training:
            return image, target
        h, w = image.shape[-2:]
        size = mmcv_rescale_size(h, w, (self.max_size, self.min_size[-1]))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        image = (image * 255).round().clamp(0, 255) / 255
        if target is not None and "boxes" in target:
            target["boxes"] = resize_boxes(target["boxes"], (h, w), size)
        return super().normalize(image), target

    def postprocess(self, result, image_shapes, original_image_sizes):
        if self.training:
            return result
        for pred, im_s, o_im_s in zip(result, image_shapes, original_image_sizes):
            pred["boxes"] = resize_boxes(pred["boxes"], im_s, o_im_s)
            if "masks" in pred:
                pred["masks"] = paste_masks_float(pred["masks"], pred["boxes"], o_im_s)
        return result


class FixedStrideAnchorGenerator(AnchorGenerator):
    """mmdet anchors: base anchors not rounded, and the configured strides (torchvision uses
    padded_size // feature_size, which gives P6 stride 61 instead of 64 for 800-px rows)."""

    def __init__(self, strides=ANCHOR_STRIDES, sizes=((32,), (64,), (128,), (256,), (512,)),
                 aspect_ratios=((0.5, 1.0, 2.0),) * 5):
        super().__init__(sizes, aspect_ratios)
        self.strides = tuple(strides)

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device=torch.device("cpu")):
        scales = torch.as_tensor(scales, dtype=dtype, device=device)
        h_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=dtype, device=device))
        ws = (1 / h_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales[None, :]).view(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2

    def forward(self, image_list: ImageList, feature_maps: List[torch.Tensor]) -> List[torch.Tensor]:
        grid_sizes = [f.shape[-2:] for f in feature_maps]
        device = feature_maps[0].device
        strides = [[torch.tensor(s, device=device), torch.tensor(s, device=device)] for s in self.strides]
        self.set_cell_anchors(feature_maps[0].dtype, device)
        anchors = torch.cat(self.grid_anchors(grid_sizes, strides))
        return [anchors for _ in image_list.image_sizes]


class AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """RoIAlign with ``aligned=True`` (mmcv's default; torchvision hard-codes False: a half-pixel shift).
    Build with ``sampling_ratio=0`` for mmcv's adaptive ceil(roi/bin) samples. Level mapping is torchvision's,
    equal to mmdet's floor(log2(sqrt(wh)/56)) clamped to P2..P5."""

    def forward(self, x, boxes, image_shapes):
        feats = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(feats, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        rois = _convert_to_roi_format(boxes)
        levels = self.map_levels(boxes) if len(feats) > 1 else rois.new_zeros(len(rois), dtype=torch.int64)
        out = feats[0].new_zeros((len(rois), feats[0].shape[1]) + tuple(self.output_size))
        for level, (feat, scale) in enumerate(zip(feats, self.scales)):
            idx = torch.where(levels == level)[0]
            pooled = roi_align(feat, rois[idx], self.output_size, scale, self.sampling_ratio, aligned=True)
            out[idx] = pooled.to(out.dtype)  # levels may differ in dtype under autocast
        return out


# --- builders ---------------------------------------------------------------------------------------------------
def _detector_kwargs() -> dict:
    """Everything but the RoI heads' layers: mmdet's test_cfg and the protocol replacements above."""
    names = ["0", "1", "2", "3"]
    return dict(
        rpn_anchor_generator=FixedStrideAnchorGenerator(),
        box_roi_pool=AlignedMultiScaleRoIAlign(names, 7, sampling_ratio=0),
        mask_roi_pool=AlignedMultiScaleRoIAlign(names, 14, sampling_ratio=0),
        rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7,
        box_score_thresh=0.05, box_nms_thresh=0.5, box_detections_per_img=100,
        min_size=TEST_SCALE[1], max_size=TEST_SCALE[0],
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],  # mmdet's 0-255 values / 255
    )


def _use_mmdet_transform(model: MaskRCNN) -> MaskRCNN:
    t = model.transform
    model.transform = MMDetTransform(t.min_size, t.max_size, t.image_mean, t.image_std)
    return model


def mask_rcnn(config_name: str, num_classes: int = 80, detector: Optional[dict] = None, **backbone_kwargs) -> MaskRCNN:
    """The official Mask R-CNN config ``config_name`` (``mask_rcnn_1x_hybrid_small``, ``mask_rcnn_1x_xxs``, ...)
    as a torchvision ``MaskRCNN`` with ``num_classes + 1`` outputs (label 0 = background, label L = mmdet
    class L-1). ``convert.convert_checkpoint`` turns the official state dict into this model's.
    ``detector``: torchvision ``MaskRCNN`` keywords replacing the official ones (e.g. fewer sampled RoIs for a CPU
    smoke run); ``backbone_kwargs``: for the dense backbone (``drop_path_rate``)."""
    if config_name not in MASK_RCNN_CONFIGS:
        raise KeyError(f"{config_name}: not one of {MASK_RCNN_CONFIGS}")
    backbone = BackboneWithFPN(build_official(backbone_stem(config_name), **backbone_kwargs))
    model = MaskRCNN(backbone, num_classes=num_classes + 1, **{**_detector_kwargs(), **(detector or {})})
    return _use_mmdet_transform(model).eval()


def build_detector(config_name: str, num_classes: int = 80, detector: Optional[dict] = None,
                   **backbone_kwargs) -> nn.Module:
    """Any official detection config: Mask R-CNN or Cascade Mask R-CNN (arguments as ``mask_rcnn``)."""
    if config_name.startswith("cascade_"):
        from .cascade import cascade_mask_rcnn  # lazy: cascade imports this module (import cycle)
        return cascade_mask_rcnn(config_name, num_classes, detector, **backbone_kwargs)
    return mask_rcnn(config_name, num_classes, detector, **backbone_kwargs)


def set_test_scale(model: nn.Module, scale) -> None:
    """The keep-ratio test scale (long, short) of ``model``'s transform (mmdet's test ``img_scale``)."""
    model.transform.max_size, model.transform.min_size = int(max(scale)), (int(min(scale)),)


# --- what the published FLOPs count ------------------------------------------------------------------------------
class CountedForward(nn.Module):
    """mmdet's ``forward_dummy``, which its ``get_flops.py`` counts for the published detector GFLOPs: backbone +
    FPN on the (already normalised) image, the RPN head on every level, the box head on 1000 RoIs and the mask
    head on the first 100 (each cascade stage: both). No NMS or post-processing, so the work does not depend on
    the weights (random weights detect nothing, and a real forward would skip the mask head)."""

    def __init__(self, detector: nn.Module, rois: int = 1000, mask_rois: int = 100):
        super().__init__()
        self.detector, self.rois, self.mask_rois = detector, rois, mask_rois

    def forward(self, x: torch.Tensor):
        det = self.detector
        features = det.backbone(x)
        out = list(det.rpn.head(list(features.values())))
        # fixed boxes spread over the image (mmdet: torch.randn(1000, 4)); RoIAlign is not counted either way
        h, w = x.shape[-2:]
        t = torch.linspace(0, 1, self.rois, device=x.device)
        boxes = torch.stack([t * w / 2, t * h / 2, w / 2 + t * w / 2, h / 2 + t * h / 2], dim=1)
        heads = det.roi_heads
        stage = lambda m, i: m[i] if isinstance(m, nn.ModuleList) else m  # noqa: E731
        stages = len(heads.box_head) if isinstance(heads.box_head, nn.ModuleList) else 1
        box_feats = heads.box_roi_pool(features, [boxes], [(h, w)])
        mask_feats = heads.mask_roi_pool(features, [boxes[:self.mask_rois]], [(h, w)])
        for i in range(stages):
            out += list(stage(heads.box_predictor, i)(stage(heads.box_head, i)(box_feats)))
            out.append(stage(heads.mask_predictor, i)(stage(heads.mask_head, i)(mask_feats)))
        return out
