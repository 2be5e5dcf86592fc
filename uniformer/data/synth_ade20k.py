"""A small synthetic data set in the exact ADE20K layout, for smoke runs and tests (no download).

Each image is a textured background (label 0, "other") with a few filled shapes; every shape class has its own
colour family, shape and stripe texture, so a segmenter has to use colour and form. The annotation is an 8-bit
grey PNG (mode L) holding the class index per pixel (0 = other, 1..classes), as ADEChallengeData2016's.

Deterministic: each image draws from its own RNG seeded by (seed, split, index) and files are written with
fixed encoder settings, so the same arguments give byte-identical files; ``manifest.json`` (sha256 per file
plus a top-level sha256) is written last, after the ``.uniformer-synthetic`` marker (see ``synth_out``).
"""
import colorsys
import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..io import write_json
from .ade20k import SPLITS
from .synth_out import manifest_sha256, prepare_out

SHAPES = ("ellipse", "rectangle", "triangle")
SPLIT_CODES = {"train": 0, "val": 1}


def _shape(draw: ImageDraw.ImageDraw, kind: str, box, fill) -> None:
    x0, y0, x1, y1 = box
    if kind == "ellipse":
        draw.ellipse(box, fill=fill)
    elif kind == "rectangle":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)


def draw_sample(classes: int, size: int, rng: np.random.Generator):
    """(RGB image, label map) of one sample: noisy gradient background + 1..4 shapes of random classes."""
    h, w = size, int(size * rng.uniform(1.0, 1.5))  # landscape, like most ADE20K images
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(60, 200, size=3)
    img = base + 40 * np.sin(xx[..., None] / rng.uniform(3, 12) + rng.uniform(0, 6, size=3))
    img = img + 20 * (yy[..., None] / h)
    label = Image.new("L", (w, h), 0)
    colour = Image.new("RGB", (w, h))
    mask = Image.new("L", (w, h), 0)
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(1, classes + 1))
        r = rng.uniform(0.15, 0.35) * size
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        box = (cx - r, cy - r, cx + r, cy + r)
        hue = (k - 1) / classes
        rgb = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)))
        _shape(ImageDraw.Draw(label), SHAPES[k % len(SHAPES)], box, k)
        one = Image.new("L", (w, h), 0)
        _shape(ImageDraw.Draw(one), SHAPES[k % len(SHAPES)], box, 255)
        colour.paste(Image.new("RGB", (w, h), rgb), mask=one)
        mask.paste(one, mask=one)
    stripes = 1 - 0.25 * ((xx + yy) // (2 + np.asarray(label) % 4) % 2)  # class-dependent texture
    fg = np.asarray(mask)[..., None] > 0
    img = np.where(fg, np.asarray(colour) * stripes[..., None], img) + rng.normal(0, 6, size=(h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)), np.asarray(label)


def _png(label: np.ndarray) -> bytes:
    im = Image.fromarray(label.astype(np.uint8), mode="L")
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _jpg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_synthetic_ade20k(out: os.PathLike, classes: int = 8, train: int = 16, val: int = 8, size: int = 64,
                           seed: int = 0) -> dict:
    """Write ``out/{images,annotations}/{training,validation}/`` and ``out/manifest.json``; return the manifest.
    ``classes`` (1..150) are drawn as labels 1..classes; 0 is the background ("other", ignored)."""
    if not 1 <= classes <= 150:
        raise ValueError(f"classes={classes}: ADE20K annotations hold 1..150")
    if size < 16:
        raise ValueError(f"size={size}: use at least 16 pixels")
    out = Path(out)
    prepare_out(out, __name__)
    files = []
    for split, n in (("train", train), ("val", val)):
        sub = SPLITS[split]
        for i in range(n):
            stem = f"ADE_{'train' if split == 'train' else 'val'}_{i + 1:08d}"
            img, label = draw_sample(classes, size, np.random.default_rng([seed, SPLIT_CODES[split], i]))
            for rel, data in ((f"images/{sub}/{stem}.jpg", _jpg(img)), (f"annotations/{sub}/{stem}.png", _png(label))):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                (out / rel).write_bytes(data)
                files.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"dataset": "ade20k-synthetic", "generator": __name__,
                "params": dict(classes=classes, train=train, val=val, size=size, seed=seed),
                "files": sorted(files, key=lambda f: f["path"])}
    manifest["sha256"] = manifest_sha256(manifest)
    write_json(out / "manifest.json", manifest)
    return manifest
