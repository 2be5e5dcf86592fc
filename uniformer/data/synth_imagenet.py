"""A small synthetic data set in the exact ImageNet layout, for smoke runs and tests (no download).

Each class is a procedurally drawn pattern: shape (8) x colour family (7) x style (3), combined so that
neighbouring classes share a colour with some classes and a shape with others; a model has to use both.
Every image jitters hue, saturation, brightness, position, scale and rotation, and adds a gradient
background, random clutter (some of it over the object) and Gaussian noise before JPEG encoding.

Deterministic: each image draws from its own RNG seeded by (seed, split, class, image number), so the same
arguments give byte-identical files, and ``manifest.json`` (sha256 per file plus a top-level sha256)
tells a pipeline when the data changed.
"""
import colorsys
import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..io import write_json
from .synth_out import manifest_sha256, prepare_out

SHAPES = ("circle", "square", "triangle", "cross", "ring", "stripes", "star", "chevron")
COLOURS = ("red", "yellow", "green", "cyan", "blue", "purple", "magenta")  # hue families, evenly spaced
STYLES = ("solid", "outline", "two-tone")
# Pairwise coprime sizes: class k -> (k % 8, k % 7, k % 3) is unique for k < 8 * 7 * 3 (Chinese remainder).
MAX_CLASSES = len(SHAPES) * len(COLOURS) * len(STYLES)
SPLIT_CODES = {"train": 0, "val": 1}
SUPERSAMPLE = 2  # the object is drawn at 2x and downsampled, for anti-aliased edges


def class_pattern(k: int) -> tuple:
    """(shape, colour, style) of class ``k`` (``k`` = label = position of the wnid in sorted order)."""
    return SHAPES[k % len(SHAPES)], COLOURS[k % len(COLOURS)], STYLES[k % len(STYLES)]


def make_wnids(classes: int, seed: int) -> list:
    """``classes`` distinct, sorted, wnid-like folder names ``n0xxxxxxx`` (8 digits after the n)."""
    rng = np.random.default_rng([seed, 0x5EED])
    numbers = set()
    while len(numbers) < classes:
        numbers.add(int(rng.integers(0, 10**7)))
    return [f"n0{n:07d}" for n in sorted(numbers)]


def _hsv(h: float, s: float, v: float) -> tuple:
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _polygon(points, cx, cy, r, angle):
    c, s = np.cos(angle), np.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in points]


_UNIT = {  # shapes as polygons on the unit circle, rotated and scaled per image
    "square": [(np.cos(a), np.sin(a)) for a in np.arange(4) * np.pi / 2 + np.pi / 4],
    "triangle": [(np.cos(a), np.sin(a)) for a in np.arange(3) * 2 * np.pi / 3 - np.pi / 2],
    "star": [((1.0 if i % 2 == 0 else 0.45) * np.cos(a), (1.0 if i % 2 == 0 else 0.45) * np.sin(a))
             for i, a in enumerate(np.arange(10) * np.pi / 5 - np.pi / 2)],
    "cross": [(-.3, -1), (.3, -1), (.3, -.3), (1, -.3), (1, .3), (.3, .3), (.3, 1), (-.3, 1), (-.3, .3),
              (-1, .3), (-1, -.3), (-.3, -.3)],
    "chevron": [(-1, -.5), (0, .25), (1, -.5), (1, .15), (0, .9), (-1, .15)],
}


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float) -> Image.Image:
    """White-on-black mask of one shape, in a ``size`` x ``size`` image."""
    mask = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(mask)
    if shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif shape == "ring":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        d.ellipse((cx - 0.6 * r, cy - 0.6 * r, cx + 0.6 * r, cy + 0.6 * r), fill=0)
    elif shape == "stripes":  # a disk of parallel bars at the image's angle
        bars = Image.new("L", (size, size), 0)
        db = ImageDraw.Draw(bars)
        for offset in np.arange(-1.0, 1.01, 0.5):
            db.polygon(_polygon([(-1.5, offset - .12), (1.5, offset - .12), (1.5, offset + .12),
                                 (-1.5, offset + .12)], cx, cy, r, angle), fill=255)
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        mask = Image.fromarray(np.minimum(np.asarray(mask), np.asarray(bars)))
    else:
        d.polygon(_polygon(_UNIT[shape], cx, cy, r, angle), fill=255)
    return mask


def _erode(mask: np.ndarray, t: int) -> np.ndarray:
    """Erosion by a (2t+1)-pixel square, done separably with shifted minimums (much faster than PIL's MinFilter)."""
    out = mask
    for axis in (0, 1):
        padded = np.pad(out, [(t, t) if a == axis else (0, 0) for a in (0, 1)])
        n = out.shape[axis]
        out = np.minimum.reduce([np.take(padded, range(i, i + n), axis=axis) for i in range(2 * t + 1)])
    return out


def draw_image(k: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One jittered image of class ``k``."""
    shape, colour, style = class_pattern(k)
    # Background: a gradient between two dull random colours.
    c1 = np.array(_hsv(rng.random(), rng.uniform(0, .35), rng.uniform(.2, .9)), np.float32)
    c2 = np.array(_hsv(rng.random(), rng.uniform(0, .35), rng.uniform(.2, .9)), np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = ((xx - .5) * np.cos(theta) + (yy - .5) * np.sin(theta) + .71) / 1.42
    canvas = Image.fromarray((c1 + (c2 - c1) * t[..., None]).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)

    def clutter(n):  # random thin lines and small blobs in any colour
        for _ in range(n):
            fill = _hsv(rng.random(), rng.uniform(.2, .8), rng.uniform(.3, 1))
            x, y = rng.uniform(0, size, 2)
            if rng.random() < .5:
                dx, dy = rng.uniform(-.4, .4, 2) * size
                draw.line((x, y, x + dx, y + dy), fill=fill, width=int(rng.integers(1, 3)))
            else:
                rr = rng.uniform(.02, .07) * size
                draw.ellipse((x - rr, y - rr, x + rr, y + rr), fill=fill)

    clutter(int(rng.integers(3, 8)))
    # The object: class colour family with jitter, random place, scale and rotation.
    hue = COLOURS.index(colour) / len(COLOURS) + rng.uniform(-.035, .035)
    sat, val = rng.uniform(.55, 1), rng.uniform(.55, 1)
    big = size * SUPERSAMPLE
    cx, cy = (.5 + rng.uniform(-.15, .15, 2)) * big
    r = rng.uniform(.22, .36) * big
    mask = _shape_mask(shape, big, cx, cy, r, rng.uniform(0, 2 * np.pi))
    if style != "solid":
        core = _erode(np.asarray(mask), max(1, int(r / 5)))  # the shape shrunk inwards
        if style == "outline":
            mask = Image.fromarray(np.asarray(mask) - core)
        core = Image.fromarray(core)
    canvas.paste(_hsv(hue, sat, val), mask=mask.resize((size, size), Image.BOX))
    if style == "two-tone":  # a dark core in the same hue
        canvas.paste(_hsv(hue, sat, val * .35), mask=core.resize((size, size), Image.BOX))
    clutter(int(rng.integers(0, 3)))
    noisy = np.asarray(canvas, np.float32) + rng.normal(0, rng.uniform(3, 12), (size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _encode_jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_synthetic_imagenet(out: os.PathLike, classes: int, train_per_class: int, val_per_class: int,
                             size: int, seed: int) -> dict:
    """Write ``out/{train,val}/<wnid>/*.JPEG`` and ``out/manifest.json``; return the manifest.

    A previous synthetic set in ``out`` is replaced. The manifest is written last (atomically): a folder
    without one is incomplete.
    """
    if not 1 <= classes <= MAX_CLASSES:
        raise ValueError(f"classes={classes}: the generator draws 1..{MAX_CLASSES} distinct classes "
                         f"({len(SHAPES)} shapes x {len(COLOURS)} colours x {len(STYLES)} styles)")
    if size < 16:
        raise ValueError(f"size={size}: use at least 16 pixels so the shapes stay recognisable")
    if train_per_class < 1 or val_per_class < 0:
        raise ValueError("need train_per_class >= 1 and val_per_class >= 0")
    out = Path(out)
    prepare_out(out, __name__)
    wnids = make_wnids(classes, seed)
    files = []
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for k, wnid in enumerate(wnids):
            folder = out / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                # ILSVRC-style names: <wnid>_<n>.JPEG in train, interleaved ILSVRC2012_val_<8 digits> in val.
                name = f"{wnid}_{i + 1}.JPEG" if split == "train" else f"ILSVRC2012_val_{i * classes + k + 1:08d}.JPEG"
                rng = np.random.default_rng([seed, SPLIT_CODES[split], k, i])
                data = _encode_jpeg(draw_image(k, size, rng))
                (folder / name).write_bytes(data)
                files.append({"path": f"{split}/{wnid}/{name}", "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {
        "dataset": "imagenet-synthetic",
        "generator": __name__,
        "params": dict(classes=classes, train_per_class=train_per_class, val_per_class=val_per_class,
                       size=size, seed=seed),
        "classes": [{"label": k, "wnid": w, "pattern": " ".join(reversed(class_pattern(k)))}
                    for k, w in enumerate(wnids)],
        "files": sorted(files, key=lambda f: f["path"]),
    }
    manifest["sha256"] = manifest_sha256(manifest)
    write_json(out / "manifest.json", manifest)
    return manifest
