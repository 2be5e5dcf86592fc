"""Validate an ADE20K-layout data set before spending GPU hours on it.

Finds, each naming its path: a missing split folder, an image without annotation or an annotation without
image, an annotation whose size differs from its image's, labels outside 0..150, annotations that are not
single-channel indexed/grey PNGs, and files that cannot be decoded.
"""
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .ade20k import NUM_CLASSES, SPLITS
from .check import Report
from .images import BadImageError, open_image

EXPECTED = "ROOT/images/{training,validation}/*.jpg + ROOT/annotations/{training,validation}/*.png"


def _check_pair(report: Report, img: Path, ann: Path) -> None:
    try:
        img_size = open_image(img).size  # strict: truncated files too
    except BadImageError as e:
        report.add(img, "unreadable", str(e).removeprefix(f"{img}: "))
        return
    try:
        with Image.open(ann) as a:
            a.load()
            if a.format != "PNG" or a.mode not in ("P", "L"):
                report.add(ann, "not_indexed", f"annotation is {a.format} mode {a.mode}, expected an indexed "
                                               f"(P) or grey (L) PNG of class indices")
                return
            labels = np.asarray(a)
            ann_size = a.size
    except Exception as e:
        report.add(ann, "unreadable", f"cannot decode annotation ({e})")
        return
    if ann_size != img_size:
        report.add(ann, "size_mismatch",
                   f"annotation {ann_size[0]}x{ann_size[1]} but image {img_size[0]}x{img_size[1]}")
    if labels.size and int(labels.max()) > NUM_CLASSES:
        report.add(ann, "label_out_of_range", f"label {int(labels.max())} outside 0..{NUM_CLASSES}")


def check_ade20k(root: os.PathLike) -> Report:
    """A ``check.Report`` (``images`` = image count per split; ``classes`` = the 150 of the format)."""
    root = Path(root)
    report = Report(os.fspath(root))
    for split, sub in SPLITS.items():
        img_dir, ann_dir = root / "images" / sub, root / "annotations" / sub
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                report.add(d, "missing_split", f"missing folder (expected {EXPECTED})")
        if not (img_dir.is_dir() and ann_dir.is_dir()):
            continue
        imgs = {p.stem: p for p in img_dir.iterdir() if p.suffix == ".jpg"}
        anns = {p.stem: p for p in ann_dir.iterdir() if p.suffix == ".png"}
        for stem in sorted(set(imgs) - set(anns)):
            report.add(imgs[stem], "missing_annotation", f"no annotations/{sub}/{stem}.png")
        for stem in sorted(set(anns) - set(imgs)):
            report.add(anns[stem], "missing_image", f"no images/{sub}/{stem}.jpg")
        for stem in sorted(set(imgs) & set(anns)):
            _check_pair(report, imgs[stem], anns[stem])
        report.images[split], report.classes[split] = len(imgs), NUM_CLASSES
    return report
