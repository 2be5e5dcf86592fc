"""COCO keypoints as the published top-down test reads it: ``annotations/person_keypoints_{train,val}2017.json``,
images in ``{train,val}2017/``, and a person-detection results file (``[{image_id, category_id, bbox, score}]``,
the published one ``person_detection_results/COCO_val2017_detections_AP_H_56_person.json``). Each instance is a
person box turned into a crop (``engine.pose_protocol.box_to_center_scale``)."""
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..engine.pose_protocol import box_to_center_scale

KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
             "right_knee", "left_ankle", "right_ankle")
SKELETON = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9), (8, 10),
            (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))  # 1-based, as in the COCO file
DET_FILE = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"


def ann_file(root: os.PathLike, split: str) -> Path:
    return Path(root) / "annotations" / f"person_keypoints_{split}2017.json"


@dataclass
class Instance:
    image_id: int
    image: Path
    center: np.ndarray
    scale: np.ndarray
    score: float  # box score (1 for ground-truth boxes)
    keypoints: Optional[np.ndarray] = None  # (17, 3) x, y, visibility for ground-truth instances


def clean_box(bbox, width: int, height: int) -> Optional[List[float]]:
    """mmpose 0.16's ground-truth box cleaning: clip to the image, width and height minus 1 (inclusive pixel
    corners); None where nothing is left."""
    x, y, w, h = bbox
    x1, y1 = max(0, x), max(0, y)
    x2, y2 = min(width - 1, x1 + max(0, w - 1)), min(height - 1, y1 + max(0, h - 1))
    return [x1, y1, x2 - x1, y2 - y1] if x2 > x1 and y2 > y1 else None


def load_instances(root: os.PathLike, split: str = "val", image_size=(192, 256), det_file: Optional[str] = DET_FILE,
                   det_bbox_thr: float = 0.0) -> List[Instance]:
    """Crops of a split: from the detection results (the published test, every person box with score >=
    ``det_bbox_thr``) or, with ``det_file=None``, from the ground-truth boxes of annotated people (training)."""
    root = Path(root)
    coco = json.loads(ann_file(root, split).read_text())
    images = {im["id"]: root / f"{split}2017" / im["file_name"] for im in coco["images"]}
    out = []
    if det_file is not None:
        for det in json.loads((root / det_file).read_text()):
            if det["category_id"] != 1 or det["score"] < det_bbox_thr:
                continue
            c, s = box_to_center_scale(det["bbox"], image_size)
            out.append(Instance(det["image_id"], images[det["image_id"]], c, s, float(det["score"])))
        return out
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    for ann in coco["annotations"]:
        box = clean_box(ann["bbox"], *sizes[ann["image_id"]])
        if (ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0 or max(ann["keypoints"]) == 0
                or box is None or ann.get("area", 1) <= 0):
            continue
        c, s = box_to_center_scale(box, image_size)
        out.append(Instance(ann["image_id"], images[ann["image_id"]], c, s, 1.0,
                            np.asarray(ann["keypoints"], np.float32).reshape(17, 3)))
    return out
