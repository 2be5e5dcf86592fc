"""Semantic-segmentation metrics as mmseg reports them: one confusion matrix accumulated over the data set at
original resolution (ignored label 255 excluded), then aAcc, mIoU and mAcc from it. Classes absent from both
ground truth and prediction have no IoU (NaN) and do not count in the means (mmseg's nanmean)."""
from typing import Dict

import numpy as np

from .seg_protocol import IGNORE


class ConfusionMatrix:
    """``mat[gt, pred]`` pixel counts over every image added."""

    def __init__(self, num_classes: int = 150, ignore_index: int = IGNORE):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and label {gt.shape} differ: compare at original resolution")
        keep = gt != self.ignore_index
        gt, pred = gt[keep].astype(np.int64), pred[keep].astype(np.int64)
        if gt.size and (gt.max() >= self.num_classes or pred.max() >= self.num_classes):
            raise ValueError(f"label or prediction outside 0..{self.num_classes - 1}")
        self.mat += np.bincount(gt * self.num_classes + pred,
                                minlength=self.num_classes ** 2).reshape(self.num_classes, self.num_classes)

    def per_class(self) -> Dict[str, np.ndarray]:
        inter = np.diag(self.mat).astype(np.float64)
        gt_area, pred_area = self.mat.sum(1), self.mat.sum(0)
        union = gt_area + pred_area - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"iou": inter / union, "acc": inter / gt_area}

    def summary(self) -> Dict[str, float]:
        """aAcc, mIoU, mAcc in percent (as the paper's tables)."""
        pc = self.per_class()
        total = self.mat.sum()
        return {"aAcc": 100.0 * np.diag(self.mat).sum() / total if total else float("nan"),
                "mIoU": 100.0 * float(np.nanmean(pc["iou"])), "mAcc": 100.0 * float(np.nanmean(pc["acc"]))}
