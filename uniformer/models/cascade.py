"""Cascade Mask R-CNN RoI head (mmdet 2.11 ``CascadeRoIHead`` at test time) from torchvision's parts.

Three stages, each a ``FastRCNNConvFCHead`` (4 x conv3x3+BN+ReLU, 1 fc 1024) + ``FastRCNNPredictor`` with its
own box-coder stds, and a mask head per stage. Test time, as mmdet does:

* RoIs go through stages 0 -> 2; after stages 0 and 1 they are moved by that stage's regression of the argmax
  non-background class and clipped to the image;
* scores = softmax of the mean of the three stages' raw logits, boxes from the stage-2 regression, then the
  usual score 0.05 / NMS 0.5 / 100 per image;
* the three mask heads run on the final boxes; their sigmoid maps are averaged before pasting.

Inference only: training a cascade needs per-stage sampling, which the paper's numbers do not depend on.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

from .detection import (CASCADE_CONFIGS, BackboneWithFPN, _detector_kwargs, _use_mmdet_transform,
                        backbone_stem)
from .variants import build_official

STAGE_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))


def _coder(stds) -> BoxCoder:
    """torchvision's weights are the inverse of mmdet's target stds (means are 0)."""
    return BoxCoder(tuple(1.0 / s for s in stds))


class CascadeRoIHeads(RoIHeads):
    """``box_head`` / ``box_predictor`` / ``mask_head`` / ``mask_predictor`` are ModuleLists, one per stage."""

    def __init__(self, box_roi_pool, mask_roi_pool, num_classes: int, channels: int = 256,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100):
        stages = range(len(STAGE_STDS))
        box_head = nn.ModuleList(FastRCNNConvFCHead((channels, 7, 7), [256] * 4, [1024], norm_layer=nn.BatchNorm2d)
                                 for _ in stages)
        box_predictor = nn.ModuleList(FastRCNNPredictor(1024, num_classes) for _ in stages)
        super().__init__(box_roi_pool, box_head, box_predictor, 0.5, 0.5, 512, 0.25, None,
                         score_thresh, nms_thresh, detections_per_img,
                         mask_roi_pool=mask_roi_pool,
                         mask_head=nn.ModuleList(MaskRCNNHeads(channels, [256] * 4, 1) for _ in stages),
                         mask_predictor=nn.ModuleList(MaskRCNNPredictor(256, 256, num_classes) for _ in stages))
        self.stage_coders = [_coder(s) for s in STAGE_STDS]
        self.box_coder = self.stage_coders[-1]  # postprocess_detections decodes the last stage's regression

    def _stage(self, i: int, features, rois: List[torch.Tensor], image_shapes):
        x = self.box_roi_pool(features, rois, image_shapes)
        return self.box_predictor[i](self.box_head[i](x))

    def refine(self, i: int, rois: List[torch.Tensor], logits: torch.Tensor, deltas: torch.Tensor,
               image_shapes) -> List[torch.Tensor]:
        """Move the RoIs by stage ``i``'s regression of their argmax non-background class, clipped."""
        label = logits[:, 1:].argmax(dim=1) + 1  # background is column 0 here (mmdet: last)
        deltas = deltas.reshape(len(deltas), logits.shape[1], 4)[torch.arange(len(deltas)), label]
        boxes = self.stage_coders[i].decode_single(deltas, torch.cat(rois))
        out = []
        for part, shape in zip(boxes.split([len(r) for r in rois]), image_shapes):
            out.append(box_ops.clip_boxes_to_image(part, shape))
        return out

    def forward(self, features: Dict[str, torch.Tensor], proposals: List[torch.Tensor],
                image_shapes: List[Tuple[int, int]], targets: Optional[List[Dict[str, torch.Tensor]]] = None):
        if self.training:
            raise NotImplementedError("the Cascade Mask R-CNN head is implemented for inference only")
        rois, stage_logits = proposals, []
        for i in range(len(self.box_head)):
            logits, deltas = self._stage(i, features, rois, image_shapes)
            stage_logits.append(logits)
            if i < len(self.box_head) - 1:
                rois = self.refine(i, rois, logits, deltas, image_shapes)
        logits = torch.stack(stage_logits).mean(dim=0)  # mmdet averages raw logits, then softmax
        boxes, scores, labels = self.postprocess_detections(logits, deltas, rois, image_shapes)
        result = [{"boxes": b, "labels": l, "scores": s} for b, s, l in zip(boxes, scores, labels)]
        mask_feats = self.mask_roi_pool(features, boxes, image_shapes)
        probs = torch.stack([self.mask_predictor[i](self.mask_head[i](mask_feats)).sigmoid()
                             for i in range(len(self.mask_head))]).mean(dim=0)
        label = torch.cat(labels)
        probs = probs[torch.arange(len(label)), label][:, None]
        for r, p in zip(result, probs.split([len(b) for b in boxes])):
            r["masks"] = p
        return result, {}


def cascade_mask_rcnn(config_name: str, num_classes: int = 80, detector: Optional[dict] = None,
                      **backbone_kwargs) -> MaskRCNN:
    """The official Cascade Mask R-CNN config (``cascade_mask_rcnn_3x_ms_hybrid_small`` / ``_base``)."""
    if config_name not in CASCADE_CONFIGS:
        raise KeyError(f"{config_name}: not one of {CASCADE_CONFIGS}")
    backbone = BackboneWithFPN(build_official(backbone_stem(config_name), **backbone_kwargs))
    model = MaskRCNN(backbone, num_classes=num_classes + 1, **{**_detector_kwargs(), **(detector or {})})
    model.roi_heads = CascadeRoIHeads(model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool,
                                      num_classes + 1)
    return _use_mmdet_transform(model).eval()
