"""Validate a COCO instance-segmentation folder before evaluating or training on it.

Finds, per split present: a missing or unparsable annotation file, duplicate image / annotation / category
ids, annotations of unknown images or categories, missing or unreadable images, images whose (EXIF-applied)
size differs from the json, invalid polygons or RLE, and zero-area or out-of-image boxes. Each problem names
the file or the annotation id.
"""
import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .check import Report
from .coco import SPLIT_FILES, coco_paths, read_image

BOX_TOLERANCE = 1.0  # px a box may exceed the image by (float rounding of real COCO boxes)


@dataclass
class CocoReport(Report):
    def summary(self) -> str:
        return self._summary(", ".join(f"{s}: {self.images.get(s, 0)} images / {self.classes.get(s, 0)} categories"
                                       for s in self.images))


def _duplicates(items, what: str, where: str, report: Report) -> None:
    for value, n in Counter(i.get("id") for i in items).items():
        if n > 1:
            report.add(where, "duplicate id", f"{what} id {value} appears {n} times")


def polygon_problem(seg) -> str:
    """Why ``seg`` is not a valid COCO polygon list, or '' if it is."""
    if not isinstance(seg, list) or not seg:
        return "empty polygon list"
    for poly in seg:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            return "a polygon needs an even number (>= 6) of coordinates"
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in poly):
            return "a polygon has a non-numeric or non-finite coordinate"
    return ""


def rle_problem(seg, h: int, w: int) -> str:
    """Why ``seg`` is not a valid RLE of an h x w image, or '' if it is."""
    from pycocotools import mask as mask_utils  # lazy: pycocotools only where COCO data is read or scored
    if list(seg.get("size", [])) != [h, w]:
        return f"RLE size {seg.get('size')} is not the image's [{h}, {w}]"
    counts = seg.get("counts")
    if isinstance(counts, list):
        if any(not isinstance(c, int) or c < 0 for c in counts) or sum(counts) != h * w:
            return f"uncompressed RLE counts must be non-negative integers summing to {h * w}"
        return ""
    try:
        area = int(mask_utils.area({"size": [h, w], "counts": counts.encode() if isinstance(counts, str) else counts}))
        decoded = mask_utils.decode({"size": [h, w], "counts": counts.encode() if isinstance(counts, str) else counts})
    except Exception as e:  # pycocotools raises TypeError / ValueError on garbage
        return f"compressed RLE cannot be decoded ({type(e).__name__})"
    if decoded.shape != (h, w) or int(decoded.sum()) != area:
        return "compressed RLE does not decode to the image size"
    return ""


def _check_annotation(ann: dict, img: dict, known_cats: set, where: str, report: Report) -> None:
    aid = ann.get("id")
    if ann.get("category_id") not in known_cats:
        report.add(where, "unknown category", f"annotation {aid}: category_id {ann.get('category_id')} not in categories")
    h, w = img["height"], img["width"]
    seg = ann.get("segmentation")
    if seg is not None:
        why = rle_problem(seg, h, w) if isinstance(seg, dict) else polygon_problem(seg)
        if why:
            report.add(where, "invalid segmentation", f"annotation {aid}: {why}")
    box = ann.get("bbox")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        report.add(where, "invalid box", f"annotation {aid}: bbox must be [x, y, w, h], got {box!r}")
        return
    x, y, bw, bh = box
    if bw <= 0 or bh <= 0 or ann.get("area", 1) <= 0:
        report.add(where, "zero-area box", f"annotation {aid}: bbox {box} / area {ann.get('area')} is empty "
                                               "(training leaves it out, as mmdet does; fix or delete it)")
    if x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + bw > w + BOX_TOLERANCE or y + bh > h + BOX_TOLERANCE:
        report.add(where, "box outside image", f"annotation {aid}: bbox {box} outside the {w}x{h} image")


def _check_images(images, image_dir: Path, report: Report) -> None:
    for img in images:
        path = image_dir / str(img.get("file_name"))
        if not path.is_file():
            report.add(path, "missing image", f"image {img.get('id')} is listed but the file does not exist")
            continue
        try:
            size = read_image(path).size
        except Exception as e:  # PIL: OSError, SyntaxError, ValueError, ... on corrupt data
            report.add(path, "unreadable image", f"cannot be decoded ({type(e).__name__}: {e})")
            continue
        if size != (img.get("width"), img.get("height")):
            report.add(path, "size mismatch", f"decoded {size[0]}x{size[1]} (EXIF applied) but the json says "
                                              f"{img.get('width')}x{img.get('height')}")


def check_coco(root: os.PathLike, splits=("train", "val")) -> CocoReport:
    """Every problem of the COCO folder ``root`` (``report.ok`` when there is none); a split whose annotation
    file is absent is skipped, but at least one must be present."""
    report = CocoReport(os.fspath(root))
    present = [s for s in splits if coco_paths(root, s)[0].is_file()]
    if not present:
        report.add(root, "missing annotations", "none of " + ", ".join(SPLIT_FILES[s][0] for s in splits) + " exists")
    for split in present:
        ann_file, image_dir = coco_paths(root, split)
        try:
            data = json.loads(ann_file.read_text())
        except (OSError, ValueError) as e:
            report.add(ann_file, "unreadable annotations", f"not valid json ({e})")
            continue
        images, anns, cats = data.get("images", []), data.get("annotations", []), data.get("categories", [])
        report.images[split], report.classes[split] = len(images), len(cats)
        for items, what in ((images, "image"), (anns, "annotation"), (cats, "category")):
            _duplicates(items, what, os.fspath(ann_file), report)
        by_id = {img.get("id"): img for img in images}
        known_cats = {c.get("id") for c in cats}
        for ann in anns:
            if ann.get("image_id") not in by_id:
                report.add(ann_file, "unknown image", f"annotation {ann.get('id')}: image_id {ann.get('image_id')} "
                                                      "not in images")
                continue
            _check_annotation(ann, by_id[ann["image_id"]], known_cats, os.fspath(ann_file), report)
        _check_images(images, image_dir, report)
    return report
