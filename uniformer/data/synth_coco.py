"""A small synthetic COCO instance-segmentation set in the exact COCO layout (no download).

``out/annotations/instances_{train,val}2017.json`` + ``out/{train,val}2017/<12-digit id>.jpg``. Each image has a
gradient background and 1-5 filled shapes of several classes (circle, square, triangle, ring, star), drawn in
order so that later ones occlude earlier ones. Annotations describe the *visible* region, as COCO's do:
unoccluded objects as polygons, occluded ones as compressed RLE; some images add a crowd region (``iscrowd=1``,
uncompressed RLE). Sizes vary (portrait and landscape), and some files are stored rotated with an EXIF
orientation tag, so a reader must apply EXIF to match the annotations (as cv2/mmcv do). Category ids have
gaps like COCO's (1, 3, 7, ...).

Byte-deterministic per arguments: each image draws from its own RNG seeded by (seed, split, image index).
``.uniformer-synthetic`` marker first, ``manifest.json`` (sha256 per file) last, as ``synth_out`` prescribes.
"""
import hashlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from ..io import write_json
from .synth_out import manifest_sha256, prepare_out

CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 3, "name": "square"}, {"id": 7, "name": "triangle"},
              {"id": 12, "name": "ring"}, {"id": 20, "name": "star"}]
COLOURS = {1: (220, 40, 40), 3: (40, 160, 60), 7: (40, 80, 220), 12: (230, 200, 30), 20: (160, 50, 200)}
SPLIT_CODES = {"train": 0, "val": 1}
EXIF_ORIENTATION = 0x0112
ROTATED_EVERY = 5  # every 5th image is stored rotated 90 degrees with EXIF orientation 6


def _shape_polygon(name: str, cx: float, cy: float, r: float, angle: float) -> list:
    """Outline vertices (x, y) of a shape; circles and rings as 24-gons."""
    if name in ("circle", "ring"):
        n, radii = 24, [r]
    elif name == "square":
        n, radii = 4, [r]
    elif name == "triangle":
        n, radii = 3, [r]
    else:  # star
        n, radii = 10, [r, r * 0.45]
    return [(cx + radii[k % len(radii)] * math.cos(angle + 2 * math.pi * k / n),
             cy + radii[k % len(radii)] * math.sin(angle + 2 * math.pi * k / n)) for k in range(n)]


def _draw_mask(h: int, w: int, name: str, cx, cy, r, angle) -> np.ndarray:
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    draw.polygon(_shape_polygon(name, cx, cy, r, angle), fill=1)
    if name == "ring":
        draw.polygon(_shape_polygon(name, cx, cy, r * 0.5, angle), fill=0)
    return np.array(img, dtype=np.uint8)


def _polygon_annotation(name, cx, cy, r, angle) -> list:
    """COCO polygons ([[x1, y1, x2, y2, ...]]) of an unoccluded shape; a ring is its outer outline only
    when it would need a hole, so rings always go through RLE instead (see ``draw_image``)."""
    return [[round(v, 2) for p in _shape_polygon(name, cx, cy, r, angle) for v in p]]


def draw_image(h: int, w: int, rng: np.random.Generator, first_ann_id: int, image_id: int):
    """One image (RGB array) and its annotations (visible regions) in display orientation."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(60, 190, size=3)
    tilt = rng.uniform(-0.3, 0.3, size=(2, 3))
    rgb = base[None, None] + tilt[0][None, None] * xx[..., None] + tilt[1][None, None] * yy[..., None]
    objects = []
    for _ in range(int(rng.integers(1, 6))):
        cat = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        r = float(rng.uniform(0.08, 0.25) * min(h, w))
        cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
        angle = float(rng.uniform(0, 2 * math.pi))
        mask = _draw_mask(h, w, cat["name"], cx, cy, r, angle)
        if mask.sum() == 0:
            continue
        colour = np.array(COLOURS[cat["id"]]) + rng.uniform(-25, 25, size=3)
        rgb[mask.astype(bool)] = colour
        objects.append((cat, mask, (cx, cy, r, angle)))
    anns, visible_total = [], np.zeros((h, w), bool)
    for j in range(len(objects) - 1, -1, -1):  # the last drawn object is on top
        cat, mask, geom = objects[j]
        visible = mask.astype(bool) & ~visible_total
        visible_total |= mask.astype(bool)
        if visible.sum() < 4:
            continue  # fully hidden: COCO has no annotation for what cannot be seen
        rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
        occluded = visible.sum() < mask.sum()
        if occluded or cat["name"] == "ring":
            segmentation = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
        else:
            segmentation = _polygon_annotation(cat["name"], *geom)
        anns.append({"image_id": image_id, "category_id": cat["id"], "segmentation": segmentation,
                     "area": float(mask_utils.area(rle)), "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)],
                     "iscrowd": 0})
    if rng.random() < 0.3:  # a crowd region: a patch of small dots of one class
        cat = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        crowd = np.zeros((h, w), np.uint8)
        for _ in range(12):
            px, py = x0 + int(rng.integers(0, w // 3)), y0 + int(rng.integers(0, h // 3))
            crowd[max(py - 2, 0):py + 2, max(px - 2, 0):px + 2] = 1
        crowd &= ~visible_total
        rgb[crowd.astype(bool)] = COLOURS[cat["id"]]
        counts = _uncompressed_counts(crowd)
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        anns.append({"image_id": image_id, "category_id": cat["id"], "segmentation": {"size": [h, w], "counts": counts},
                     "area": float(mask_utils.area(rle)), "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)],
                     "iscrowd": 1})
    for k, ann in enumerate(anns):
        ann["id"] = first_ann_id + k
    rgb += rng.normal(0, 6, size=rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), anns


def _uncompressed_counts(mask: np.ndarray) -> list:
    """COCO uncompressed RLE counts (column-major runs, starting with zeros)."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] == 1 else runs


def _encode(rgb: np.ndarray, rotated: bool) -> bytes:
    """JPEG bytes; ``rotated`` stores the pixels turned 90 degrees counter-clockwise with EXIF orientation 6
    ("rotate 90 clockwise to display"), which brings back the annotated orientation."""
    img = Image.fromarray(rgb)
    buf = io.BytesIO()
    if rotated:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = 6
        img.transpose(Image.Transpose.ROTATE_90).save(buf, format="JPEG", quality=90, exif=exif.tobytes())
    else:
        img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_synthetic_coco(out: os.PathLike, train_images: int = 8, val_images: int = 4, seed: int = 0,
                         min_size: int = 64, max_size: int = 160) -> dict:
    """Write the synthetic COCO set to ``out`` (replacing a previous synthetic set); return the manifest."""
    if train_images < 1 or val_images < 1:
        raise ValueError("need at least one train and one val image")
    if not 32 <= min_size <= max_size:
        raise ValueError(f"need 32 <= min_size <= max_size (got {min_size}, {max_size})")
    out = Path(out)
    prepare_out(out, __name__)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    files, image_id, ann_id = [], 1, 1
    for split, count in (("train", train_images), ("val", val_images)):
        folder = out / f"{split}2017"
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            rng = np.random.default_rng([seed, SPLIT_CODES[split], i])
            h, w = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
            rgb, anns = draw_image(h, w, rng, ann_id, image_id)
            name = f"{image_id:012d}.jpg"
            data = _encode(rgb, rotated=i % ROTATED_EVERY == ROTATED_EVERY - 1)
            (folder / name).write_bytes(data)
            files.append({"path": f"{split}2017/{name}", "sha256": hashlib.sha256(data).hexdigest()})
            images.append({"id": image_id, "file_name": name, "height": h, "width": w})
            annotations.extend(anns)
            image_id, ann_id = image_id + 1, ann_id + len(anns)
        text = json.dumps({"info": {"description": "uniformer synthetic COCO", "seed": seed}, "licenses": [],
                           "images": images, "annotations": annotations, "categories": CATEGORIES},
                          separators=(",", ":"))
        path = f"annotations/instances_{split}2017.json"
        (out / path).write_text(text)
        files.append({"path": path, "sha256": hashlib.sha256(text.encode()).hexdigest()})
    manifest = {"dataset": "coco-synthetic", "generator": __name__,
                "params": dict(train_images=train_images, val_images=val_images, seed=seed, min_size=min_size,
                               max_size=max_size),
                "categories": CATEGORIES, "files": sorted(files, key=lambda f: f["path"])}
    manifest["sha256"] = manifest_sha256(manifest)
    write_json(out / "manifest.json", manifest)
    return manifest
