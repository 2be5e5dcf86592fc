"""COCO ``bbox`` / ``segm`` AP with pycocotools, from torchvision-style detection outputs.

Results are written as mmdet does: boxes [x1, y1, x2 - x1, y2 - y1] (no +1), the segm score is the box score,
masks binarised (already, by ``paste_masks_float``; ``>= 0.5`` otherwise) and RLE-encoded, label L -> the
L-th smallest category id. At most 100 detections per image are scored (``maxDets`` 100).
"""
import contextlib
import io
from typing import Dict, Iterable, List, Mapping

import numpy as np
import torch

from ..data.coco import CategoryMap, load_coco

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
MASK_THR = 0.5


def to_coco_results(image_id: int, output: Mapping[str, torch.Tensor], categories: CategoryMap) -> List[dict]:
    """One image's model output (``boxes`` xyxy, ``scores``, ``labels``, optional ``masks`` (N, 1, H, W)) as
    COCO result entries."""
    from pycocotools import mask as mask_utils  # lazy: pycocotools only where COCO data is read or scored
    boxes = output["boxes"].detach().cpu().float()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    scores, labels = output["scores"].tolist(), output["labels"].tolist()
    masks = output.get("masks")
    if masks is not None:
        masks = (masks.detach().cpu()[:, 0] >= MASK_THR).numpy().astype(np.uint8)
    results = []
    for k, (box, score, label) in enumerate(zip(xywh, scores, labels)):
        entry = {"image_id": int(image_id), "category_id": categories.cat_id(int(label)), "bbox": box,
                 "score": float(score)}
        if masks is not None:
            rle = mask_utils.encode(np.asfortranarray(masks[k]))
            entry["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        results.append(entry)
    return results


def evaluate_results(coco_gt, results: List[dict], iou_types: Iterable[str] = ("bbox", "segm"),
                     image_ids=None) -> Dict[str, Dict[str, float]]:
    """{iou_type: {AP, AP50, AP75, APs, APm, APl}} (fractions, pycocotools' -1 for an empty area range kept).

    coco_gt: a pycocotools ``COCO`` or the path of an annotation file. image_ids: the images evaluated
    (default: all of ``coco_gt``); with no detection at all every AP is 0.
    """
    from pycocotools.cocoeval import COCOeval  # lazy: pycocotools only where COCO data is read or scored
    if not hasattr(coco_gt, "loadRes"):
        coco_gt = load_coco(coco_gt)
    out = {}
    for iou_type in iou_types:
        entries = [r for r in results if iou_type == "bbox" or "segmentation" in r]
        if not entries:
            out[iou_type] = {name: 0.0 for name in STAT_NAMES}
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes([dict(r) for r in entries])  # loadRes mutates its entries
            ev = COCOeval(coco_gt, coco_dt, iou_type)
            if image_ids is not None:
                ev.params.imgIds = sorted(image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats[:6])}
    return out


def evaluate_outputs(coco_gt, outputs: Mapping[int, Mapping[str, torch.Tensor]],
                     iou_types: Iterable[str] = ("bbox", "segm")) -> Dict[str, Dict[str, float]]:
    """AP of model outputs keyed by COCO image id (every image of ``coco_gt`` is evaluated)."""
    if not hasattr(coco_gt, "loadRes"):
        coco_gt = load_coco(coco_gt)
    categories = CategoryMap(coco_gt.cats)
    results = [r for image_id, output in outputs.items() for r in to_coco_results(image_id, output, categories)]
    return evaluate_results(coco_gt, results, iou_types)
