"""Cascade Mask R-CNN RoI head (mmdet 2.11 ``CascadeRoIHead`` at test time) from torchvision's parts.

Three stages, each a ``FastRCNNConvFCHead`` (4 x conv3x3+BN+ReLU, 1 fc 1024) + ``FastRCNNPredictor`` with its
own box-coder stds, and a mask head per stage. Test time, as mmdet does:

* RoIs go through stages 0 -> 2; after stages 0 and 1 they are moved by that stage's regression of the argmax
  non-background class and clipped to the image;
* scores = softmax of the mean of the three stages' raw logits, boxes from the stage-2 regression, then the
  usual score 0.05 / NMS 0.5 / 100 per image;
* the three mask heads run on the final boxes; their sigmoid maps are averaged before pasting.

Training, as mmdet's ``CascadeRoIHead.forward_train`` with the official train_cfg / loss settings:

* stage ``i`` assigns its RoIs (plus the ground-truth boxes, added as proposals) at IoU 0.5 / 0.6 / 0.7 (positive
  at or above it, negative below: no ignore band) and samples 512 with 25 % positives (torchvision's sampler);
* per stage: cross-entropy on the sampled RoIs, GIoU loss x 10 on the boxes decoded from the regression of the
  positives' class (``reg_decoded_bbox=True``), summed over positives and divided by the number sampled (mmdet's
  ``avg_factor``), and the mask loss on the positives; the stage's losses are weighted 1 / 0.5 / 0.25;
* the next stage's RoIs are this stage's sampled RoIs, moved (without gradient) by the regression of their
  assigned class (background: the argmax non-background class) and clipped, the added ground-truth boxes dropped.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss
from torchvision.ops import boxes as box_ops
from torchvision.ops import generalized_box_iou_loss

from .detection import (CASCADE_CONFIGS, BackboneWithFPN, _detector_kwargs, _use_mmdet_transform,
                        backbone_stem)
from .variants import build_official

STAGE_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
STAGE_IOUS = (0.5, 0.6, 0.7)  # train_cfg.rcnn[i].assigner: pos_iou_thr = neg_iou_thr = min_pos_iou
STAGE_LOSS_WEIGHTS = (1.0, 0.5, 0.25)
GIOU_LOSS_WEIGHT = 10.0  # loss_bbox=GIoULoss(loss_weight=10.0) in every stage


def _coder(stds) -> BoxCoder:
    """torchvision's weights are the inverse of mmdet's target stds (means are 0)."""
    return BoxCoder(tuple(1.0 / s for s in stds))


class CascadeRoIHeads(RoIHeads):
    """``box_head`` / ``box_predictor`` / ``mask_head`` / ``mask_predictor`` are ModuleLists, one per stage."""

    def __init__(self, box_roi_pool, mask_roi_pool, num_classes: int, channels: int = 256,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100,
                 batch_size_per_image: int = 512, positive_fraction: float = 0.25):
        stages = range(len(STAGE_STDS))
        box_head = nn.ModuleList(FastRCNNConvFCHead((channels, 7, 7), [256] * 4, [1024], norm_layer=nn.BatchNorm2d)
                                 for _ in stages)
        box_predictor = nn.ModuleList(FastRCNNPredictor(1024, num_classes) for _ in stages)
        super().__init__(box_roi_pool, box_head, box_predictor, 0.5, 0.5, batch_size_per_image, positive_fraction,
                         None, score_thresh, nms_thresh, detections_per_img,
                         mask_roi_pool=mask_roi_pool,
                         mask_head=nn.ModuleList(MaskRCNNHeads(channels, [256] * 4, 1) for _ in stages),
                         mask_predictor=nn.ModuleList(MaskRCNNPredictor(256, 256, num_classes) for _ in stages))
        self.stage_coders = [_coder(s) for s in STAGE_STDS]
        self.stage_matchers = [Matcher(t, t, allow_low_quality_matches=False) for t in STAGE_IOUS]
        self.box_coder = self.stage_coders[-1]  # postprocess_detections decodes the last stage's regression

    def _stage(self, i: int, features, rois: List[torch.Tensor], image_shapes):
        x = self.box_roi_pool(features, rois, image_shapes)
        return self.box_predictor[i](self.box_head[i](x))

    def refine(self, i: int, rois: List[torch.Tensor], logits: torch.Tensor, deltas: torch.Tensor,
               image_shapes, labels: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """Move the RoIs by stage ``i``'s regression of their argmax non-background class, clipped; in training,
        of their assigned class (``labels``) where it is not background."""
        label = logits[:, 1:].argmax(dim=1) + 1  # background is column 0 here (mmdet: last)
        if labels is not None:
            label = torch.where(labels > 0, labels, label)
        deltas = deltas.reshape(len(deltas), logits.shape[1], 4)[torch.arange(len(deltas)), label]
        boxes = self.stage_coders[i].decode_single(deltas, torch.cat(rois))
        out = []
        for part, shape in zip(boxes.split([len(r) for r in rois]), image_shapes):
            out.append(box_ops.clip_boxes_to_image(part, shape))
        return out

    def forward(self, features: Dict[str, torch.Tensor], proposals: List[torch.Tensor],
                image_shapes: List[Tuple[int, int]], targets: Optional[List[Dict[str, torch.Tensor]]] = None):
        if self.training:
            return [], self._losses(features, proposals, image_shapes, targets)
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

    def _sample(self, i: int, proposals: List[torch.Tensor], targets: List[Dict[str, torch.Tensor]]):
        """Stage ``i``'s assignment and sampling, per image: (rois, labels, matched gt index, is an added gt box)."""
        out = []
        for props, t in zip(proposals, targets):
            gt = t["boxes"].to(props.dtype)
            rois = torch.cat([props, gt])  # mmdet's add_gt_as_proposals
            is_gt = torch.arange(len(rois), device=rois.device) >= len(props)
            if len(gt):
                matched = self.stage_matchers[i](box_ops.box_iou(gt, rois))
                labels = t["labels"][matched.clamp(min=0)].to(torch.int64)
                labels[matched < 0] = 0  # IoU below the stage's threshold: background
            else:
                matched = torch.full((len(rois),), -1, dtype=torch.int64, device=rois.device)
                labels = torch.zeros(len(rois), dtype=torch.int64, device=rois.device)
            pos, neg = self.fg_bg_sampler([labels])
            keep = torch.where(pos[0] | neg[0])[0]
            out.append((rois[keep], labels[keep], matched[keep].clamp(min=0), is_gt[keep]))
        return out

    def _losses(self, features, proposals, image_shapes, targets) -> Dict[str, torch.Tensor]:
        losses: Dict[str, torch.Tensor] = {}
        rois = proposals
        for i, weight in enumerate(STAGE_LOSS_WEIGHTS):
            sampled = self._sample(i, [r.detach() for r in rois], targets)
            stage_rois = [s[0] for s in sampled]
            labels = torch.cat([s[1] for s in sampled])
            logits, flat_deltas = self._stage(i, features, stage_rois, image_shapes)
            deltas = flat_deltas.reshape(len(flat_deltas), -1, 4)
            pos = torch.where(labels > 0)[0]
            boxes = self.stage_coders[i].decode_single(deltas[pos, labels[pos]], torch.cat(stage_rois)[pos])
            gt = torch.cat([t["boxes"][s[2][s[1] > 0]] for s, t in zip(sampled, targets)]).to(boxes.dtype)
            losses[f"s{i}_loss_classifier"] = weight * F.cross_entropy(logits, labels)
            losses[f"s{i}_loss_box_reg"] = (weight * GIOU_LOSS_WEIGHT * generalized_box_iou_loss(boxes, gt, "sum")
                                            / max(len(labels), 1))
            pos_rois = [s[0][s[1] > 0] for s in sampled]
            if sum(len(r) for r in pos_rois):  # mask targets as the Mask R-CNN path: torchvision's maskrcnn_loss
                mask_logits = self.mask_predictor[i](self.mask_head[i](
                    self.mask_roi_pool(features, pos_rois, image_shapes)))
                losses[f"s{i}_loss_mask"] = weight * maskrcnn_loss(
                    mask_logits, pos_rois, [t["masks"] for t in targets], [t["labels"] for t in targets],
                    [s[2][s[1] > 0] for s in sampled])
            else:  # no positive anywhere in the batch: a zero that keeps the mask head in the graph
                losses[f"s{i}_loss_mask"] = sum(p.sum() for p in self.mask_predictor[i].parameters()) * 0.0
            if i < len(STAGE_LOSS_WEIGHTS) - 1:
                with torch.no_grad():
                    moved = self.refine(i, stage_rois, logits, flat_deltas, image_shapes, labels)
                rois = [r[~s[3]] for r, s in zip(moved, sampled)]  # the added ground-truth boxes dropped
        return losses


def cascade_mask_rcnn(config_name: str, num_classes: int = 80, detector: Optional[dict] = None,
                      **backbone_kwargs) -> MaskRCNN:
    """The official Cascade Mask R-CNN config (``cascade_mask_rcnn_3x_ms_hybrid_small`` / ``_base``)."""
    if config_name not in CASCADE_CONFIGS:
        raise KeyError(f"{config_name}: not one of {CASCADE_CONFIGS}")
    backbone = BackboneWithFPN(build_official(backbone_stem(config_name), **backbone_kwargs))
    model = MaskRCNN(backbone, num_classes=num_classes + 1, **{**_detector_kwargs(), **(detector or {})})
    sampler = model.roi_heads.fg_bg_sampler  # the official 512 / 0.25, or the smoke run's ``detector`` keywords
    model.roi_heads = CascadeRoIHeads(model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool,
                                      num_classes + 1, batch_size_per_image=sampler.batch_size_per_image,
                                      positive_fraction=sampler.positive_fraction)
    return _use_mmdet_transform(model).eval()
