"""Validate a COCO-keypoints set before spending GPU hours on it: missing annotation files or images,
keypoint lists that are not 17 x (x, y, v), visibility flags outside {0, 1, 2}, ``num_keypoints`` that disagree
with the flags, boxes outside their image, and person boxes in the detection file for unknown images. Every
problem names its file (and annotation id)."""
import json
import os
from pathlib import Path

from .check import Report
from .coco_pose import DET_FILE, ann_file


def _check_split(report: Report, root: Path, split: str) -> set:
    path = ann_file(root, split)
    if not path.is_file():
        report.add(path, "missing_annotations", "missing keypoint annotation file")
        return set()
    coco = json.loads(path.read_text())
    images = {im["id"]: im for im in coco["images"]}
    for im in images.values():
        if not (root / f"{split}2017" / im["file_name"]).is_file():
            report.add(root / f"{split}2017" / im["file_name"], "missing_image", f"image {im['id']} not found")
    for a in coco["annotations"]:
        where = f"{path}#annotation {a['id']}"
        kp = a.get("keypoints", [])
        if len(kp) != 51:
            report.add(where, "bad_keypoints", f"{len(kp)} keypoint values, expected 17 x 3 = 51")
            continue
        flags = kp[2::3]
        if any(v not in (0, 1, 2) for v in flags):
            report.add(where, "bad_visibility", f"visibility flags {sorted(set(flags))}, expected 0/1/2")
        if a.get("num_keypoints") != sum(v > 0 for v in flags):
            report.add(where, "num_keypoints_mismatch",
                       f"num_keypoints {a.get('num_keypoints')} but {sum(v > 0 for v in flags)} labelled joints")
        im = images.get(a["image_id"])
        x, y, w, h = a["bbox"]
        if im is None:
            report.add(where, "unknown_image", f"image_id {a['image_id']} not in images")
        elif x < 0 or y < 0 or x + w > im["width"] + 1 or y + h > im["height"] + 1 or w <= 0 or h <= 0:
            report.add(where, "bbox_outside", f"box {a['bbox']} outside the {im['width']}x{im['height']} image")
    report.images[split], report.classes[split] = len(images), 1
    return set(images)


def check_coco_pose(root: os.PathLike) -> Report:
    root = Path(root)
    report = Report(os.fspath(root))
    _check_split(report, root, "train")
    val_ids = _check_split(report, root, "val")
    det = root / DET_FILE
    if not det.is_file():
        report.add(det, "missing_detections", "missing person-box results file (the published test uses it)")
    else:
        for i, d in enumerate(json.loads(det.read_text())):
            if d.get("image_id") not in val_ids:
                report.add(f"{det}#{i}", "unknown_image", f"box for image_id {d.get('image_id')} not in val")
    return report
