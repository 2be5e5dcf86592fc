"""COCO keypoint AP with pycocotools' ``keypoints`` evaluation (the published numbers use xtcocotools, which
for standard COCO files and sigmas computes the same OKS-based AP), and the person AP of a person-box file."""
import contextlib
import io
import json
import os
from pathlib import Path
from typing import Dict, List

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STATS = ("AP", "AP50", "AP75", "AP_M", "AP_L", "AR", "AR50", "AR75", "AR_M", "AR_L")


def keypoint_ap(ann_file: os.PathLike, results: List[Dict]) -> Dict[str, float]:
    """``results``: [{image_id, category_id: 1, keypoints: [x, y, score] * 17, score}] (after rescoring and
    OKS-NMS) -> AP, AP50, AP75, AP_M, AP_L, AR ... in [0, 1]."""
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO(os.fspath(ann_file))
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STATS, map(float, ev.stats)))


def person_box_ap(ann_file: os.PathLike, det_file: os.PathLike) -> float:
    """Person AP (bbox, in [0, 1]) of a detection-results file against the keypoint annotations, which hold every
    person box of the split: the detector's figure a top-down keypoint AP depends on (the paper's file: 56.4)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(os.fspath(ann_file))
        dets = [d for d in json.loads(Path(det_file).read_text()) if d["category_id"] == 1 and d["image_id"] in gt.imgs]
        if not dets:
            return 0.0
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])
