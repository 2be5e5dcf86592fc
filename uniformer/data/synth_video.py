"""Tiny synthetic video data sets in the real on-disk formats (no download), for smoke runs and tests.

``write_synthetic_kinetics``: mp4 (H.264, libx264) clips of appearance + motion classes, with the official
split lists (``path,label``), PySlowFast lists (``path label``), the Kinetics annotation CSVs
(``label,youtube_id,time_start,time_end,split``) and a ``name<TAB>index`` class index whose order is not
alphabetical (as the published ones)::

    OUT/{train,val}_videos/<label_with_underscores>/<youtube_id>_<start:06d>_<end:06d>.mp4
    OUT/{train,val}.csv              official lists, paths relative to OUT
    OUT/slowfast/{train,val}.csv     the same in PySlowFast's space-separated form
    OUT/annotations/{train,val}.csv  the Kinetics annotation CSV (class names; needs OUT/classes.txt)
    OUT/classes.txt                  class index, 'name<TAB>index'
    OUT/manifest.json

``write_synthetic_ssv2`` / ``write_synthetic_ssv1``: a **temporal** task. Every class shows the same kind
of scene (random background, one random object at a random height) and the object visits the same
positions ``x0 + p * step`` (p = 0..n-1, horizontally wrapping around the frame) -- only the ORDER
differs: left to right, right to left, to the right and back, to the left and back. For given scene
parameters the frames of the four classes are permutations of one another (per-frame noise travels
with the position), and each frame's object position is uniform over the width, so a single frame, the
frame average or a shuffled clip carry no class information; the direction of motion does. Video ``i``
of every class (in a split) is the SAME scene, i.e. the same frames in each class's order (minimal pairs):
appearance cannot be memorised as a shortcut (a small model trained from scratch otherwise fits the
background / object of a few hundred clips long before it finds the motion), and on the validation set
any frame-order-free model scores exactly chance::

    ssv2: OUT/<id>.webm (VP9, libvpx-vp9)  + OUT/something-something-v2-{labels,train,validation}.json
          OUT/<id>/img_00001.jpg ...        + OUT/somesomev2_rgb_{train,validation}_split.txt
          OUT/category.txt                  one template per line ([something] placeholders)
    ssv1: OUT/<id>/img_00001.jpg ...        + OUT/somesomev1_rgb_{train,validation}_split.txt
          OUT/category.txt                  one template per line, no brackets

The labels JSON numbers the templates alphabetically; ``category.txt`` (the class order the split lists
use, as the official ``sthv2_category.txt``) in a seeded order that is not alphabetical.

Deterministic: every video draws from its own RNG seeded by (seed, dataset, split, class, number) and the
encoders run single-threaded with FFmpeg's bitexact flags (x264 on its C path, see ``KINETICS_CODEC``), so
the same arguments give byte-identical files with this PyAV/FFmpeg build, whatever ran before in the process;
``manifest.json`` holds a sha256 per file and a top-level sha256.
"""
import colorsys
import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from ..io import write_json
from .synth_out import MANIFEST, manifest_sha256, prepare_out
from .something import LIST_NAME, V2_LABELS, V2_SPLIT_JSON
from .video import FRAME_TEMPLATE

SPLITS = {"train": 0, "val": 1}
DATASET_CODES = {"kinetics": 1, "ssv2": 2, "ssv1": 3}

# (name, object shape, hue, motion) -- names are Kinetics-like (spaces, parentheses) on purpose.
KINETICS_CLASSES = (
    ("bouncing ball", "circle", 0.00, "bounce"),
    ("spinning square", "square", 0.62, "spin"),
    ("flashing light", "circle", 0.15, "flash"),
    ("sliding stripes", "stripes", 0.33, "slide"),
    ("pulsing ring (in and out)", "ring", 0.83, "pulse"),
    ("drifting cross", "cross", 0.50, "drift"),
)
# SSV2-style templates; the order of positions each class visits (see ``ssv_positions``).
SSV_CLASSES = (
    ("Moving [something] from left to right", "sweep_right"),
    ("Moving [something] from right to left", "sweep_left"),
    ("Moving [something] to the right and back", "right_and_back"),
    ("Moving [something] to the left and back", "left_and_back"),
)
# x264's AVX-512 macroblock-tree code reads uninitialised heap memory on small frames, so its output depended on
# what the process had allocated before (e.g. a VP9 encode): asm=0 runs x264's plain C path, which is clean (and
# the same on every CPU); the frames are tiny, so it costs little.
KINETICS_CODEC = ("mp4", "libx264", {"crf": "18", "preset": "veryfast", "x264-params": "asm=0"})
SSV2_CODEC = ("webm", "libvpx-vp9", {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"})


# --- encoding ---------------------------------------------------------------------------------------------

def encode_video(frames: Sequence[np.ndarray], container_format: str, codec: str, fps: int,
                 options: Dict[str, str]) -> bytes:
    """Encode ``(H, W, 3)`` uint8 frames (even H, W) with PyAV, deterministically (bitexact, one thread)."""
    import av  # lazy: PyAV only when a video is encoded (keeps `uniformer --help` from loading it)

    h, w = frames[0].shape[:2]
    buf = io.BytesIO()
    with av.open(buf, "w", format=container_format, container_options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=fps, options=dict(options))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        stream.thread_count = 1
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def encode_jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# --- drawing ----------------------------------------------------------------------------------------------

def _rgb(h: float, s: float, v: float) -> Tuple[int, int, int]:
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A static gradient between two dull random colours, float32 (H, W, 3)."""
    c1 = np.array(_rgb(rng.random(), rng.uniform(0, .3), rng.uniform(.25, .75)), np.float32)
    c2 = np.array(_rgb(rng.random(), rng.uniform(0, .3), rng.uniform(.25, .75)), np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = ((xx - .5) * np.cos(theta) + (yy - .5) * np.sin(theta) + .71) / 1.42
    return c1 + (c2 - c1) * t[..., None]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float, fill) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(2, int(r / 3)))
    elif shape in ("square", "triangle"):
        k = 4 if shape == "square" else 3
        pts = [(cx + r * np.cos(angle + 2 * np.pi * i / k), cy + r * np.sin(angle + 2 * np.pi * i / k))
               for i in range(k)]
        draw.polygon(pts, fill=fill)
    elif shape == "cross":
        w = max(1.5, r / 3)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    elif shape == "stripes":
        for off in (-r, -r / 3, r / 3, r):
            draw.rectangle((cx + off - r / 6, cy - r, cx + off + r / 6, cy + r), fill=fill)
    else:
        raise ValueError(shape)


def _finish(canvas: Image.Image, noise: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(canvas, np.float32) + noise, 0, 255).astype(np.uint8)


def render_kinetics_video(kind: int, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(num_frames, size, size, 3)`` uint8: class ``kind`` of ``KINETICS_CLASSES`` (shape, colour, motion)."""
    _, shape, hue, motion = KINETICS_CLASSES[kind]
    bg = _background(size, rng)
    colour = _rgb(hue + rng.uniform(-.04, .04), rng.uniform(.6, 1), rng.uniform(.7, 1))
    r = rng.uniform(.12, .2) * size
    cx, cy = rng.uniform(.35, .65, 2) * size
    phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(8, 16)
    vx, vy = rng.uniform(.4, 1.0) * rng.choice([-1, 1]), rng.uniform(.4, 1.0) * rng.choice([-1, 1])
    sigma = rng.uniform(2, 6)
    frames = []
    for t in range(num_frames):
        w = 2 * np.pi * t / period + phase
        x, y, rad, ang, on = cx, cy, r, 0.0, True
        if motion == "bounce":
            y = size * .75 - abs(np.sin(w)) * size * .45
        elif motion == "spin":
            ang = w
        elif motion == "flash":
            on = np.sin(w) > 0
        elif motion == "slide":
            x = (cx + vx * 2 * t) % size
        elif motion == "pulse":
            rad = r * (1 + .45 * np.sin(w))
        elif motion == "drift":
            x, y = (cx + vx * 1.5 * t) % size, (cy + vy * 1.5 * t) % size
        canvas = Image.fromarray(bg.astype(np.uint8))
        if on:
            _draw_shape(ImageDraw.Draw(canvas), shape, x, y, rad, ang, colour)
        frames.append(_finish(canvas, rng.normal(0, sigma, (size, size, 3))))
    return np.stack(frames)


def ssv_positions(kind: int, n: int) -> np.ndarray:
    """The position index (0..n-1) the object is at in each of the ``n`` frames of SSV class ``kind``.
    Every class visits each position exactly once; only the order differs."""
    order = SSV_CLASSES[kind][1]
    ramp = np.arange(n)
    there_and_back = np.concatenate([ramp[0::2], ramp[1::2][::-1]])  # 0 2 4 ... 5 3 1
    return {"sweep_right": ramp, "sweep_left": ramp[::-1], "right_and_back": there_and_back,
            "left_and_back": n - 1 - there_and_back}[order]


def render_ssv_video(kind: int, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(num_frames, size, size, 3)`` uint8 of SSV class ``kind``. The scene (background, object, start
    ``x0``, step, height, per-position noise) is drawn before the class is used, so the same RNG state gives
    the same frames in a class-specific order; x wraps around the frame, making every frame's position
    uniform over the width."""
    bg = _background(size, rng)
    shape = ("circle", "square", "triangle", "cross")[int(rng.integers(0, 4))]
    colour = _rgb(rng.random(), rng.uniform(.6, 1), rng.uniform(.75, 1))
    r = rng.uniform(.16, .22) * size
    x0 = rng.uniform(0, size)
    step = rng.uniform(.07, .09) * size  # a clear motion: ~5 px a frame at 64 px, a sweep crosses the frame
    y = rng.uniform(.3, .7) * size
    angle = rng.uniform(0, 2 * np.pi)
    sigma = rng.uniform(2, 6)
    noise = rng.normal(0, sigma, (num_frames, size, size, 3))  # per POSITION, so it travels with it
    frames = []
    for p in ssv_positions(kind, num_frames):
        canvas = Image.fromarray(bg.astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        x = (x0 + p * step) % size
        for dx in (-size, 0, size):  # wrap around the left/right edges
            _draw_shape(draw, shape, x + dx, y, r, angle, colour)
        frames.append(_finish(canvas, noise[p]))
    return np.stack(frames)


# --- writing ----------------------------------------------------------------------------------------------

class _Writer:
    def __init__(self, out: Path):
        self.out = out
        self.files: List[dict] = []

    def write(self, rel: str, data: bytes) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest()})

    def text(self, rel: str, text: str) -> None:
        self.write(rel, text.encode())

    def manifest(self, dataset: str, params: dict, classes: list, extra: dict) -> dict:
        import av  # lazy: PyAV only when a video set is written

        manifest = {"dataset": dataset, "generator": __name__, "params": params, "classes": classes,
                    "encoder": {"av": av.__version__, **extra},
                    "files": sorted(self.files, key=lambda f: f["path"])}
        manifest["sha256"] = manifest_sha256(manifest)
        write_json(self.out / MANIFEST, manifest)
        return manifest


def _permutation(n: int, seed: int, code: int) -> List[int]:
    """A seeded class order that is not the identity (so label order differs from name order)."""
    perm = [int(i) for i in np.random.default_rng([seed, code, 0xC1A55]).permutation(n)]
    return perm[1:] + perm[:1] if n > 1 and perm == sorted(perm) else perm


def _check_args(classes: int, max_classes: int, per_split: Sequence[int], frames: int, size: int) -> None:
    if not 2 <= classes <= max_classes:
        raise ValueError(f"classes={classes}: the generator has 2..{max_classes} classes")
    if size < 32 or size % 2:
        raise ValueError(f"size={size}: use an even size >= 32 (yuv420p needs even sides)")
    if frames < 4:
        raise ValueError(f"frames={frames}: use at least 4")
    if per_split[0] < 1 or per_split[1] < 0:
        raise ValueError("need train_per_class >= 1 and val_per_class >= 0")


def _youtube_id(rng: np.random.Generator) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 11))


def write_synthetic_kinetics(out: os.PathLike, classes: int = 5, train_per_class: int = 8, val_per_class: int = 4,
                             frames: int = 32, size: int = 64, fps: int = 30, seed: int = 0) -> dict:
    """Write a synthetic Kinetics-format set to ``out`` (see the module doc); return the manifest."""
    _check_args(classes, len(KINETICS_CLASSES), (train_per_class, val_per_class), frames, size)
    out = Path(out)
    prepare_out(out, __name__)
    w = _Writer(out)
    kinds = _permutation(classes, seed, DATASET_CODES["kinetics"])  # label k shows KINETICS_CLASSES[kinds[k]]
    names = [KINETICS_CLASSES[kinds[k]][0] for k in range(classes)]
    fmt, codec, options = KINETICS_CODEC
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        official, slowfast = [], []
        annotations = io.StringIO()
        csv_out = csv.writer(annotations, lineterminator="\n")
        csv_out.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        for label, name in enumerate(names):
            for i in range(per_class):
                rng = np.random.default_rng([seed, DATASET_CODES["kinetics"], SPLITS[split], label, i])
                yid, start = _youtube_id(rng), int(rng.integers(0, 290))
                rel = f"{split}_videos/{name.replace(' ', '_')}/{yid}_{start:06d}_{start + 10:06d}.mp4"
                video = render_kinetics_video(kinds[label], frames, size, rng)
                w.write(rel, encode_video(list(video), fmt, codec, fps, options))
                official.append(f"{rel},{label}")
                slowfast.append(f"{rel} {label}")
                csv_out.writerow([name, yid, start, start + 10, split])
        w.text(f"{split}.csv", "\n".join(official) + "\n")
        w.text(f"slowfast/{split}.csv", "\n".join(slowfast) + "\n")
        w.text(f"annotations/{split}.csv", annotations.getvalue())
    w.text("classes.txt", "".join(f"{n}\t{k}\n" for k, n in enumerate(names)))
    params = dict(classes=classes, train_per_class=train_per_class, val_per_class=val_per_class, frames=frames,
                  size=size, fps=fps, seed=seed)
    cls = [{"label": k, "name": n, "motion": KINETICS_CLASSES[kinds[k]][3]} for k, n in enumerate(names)]
    return w.manifest("kinetics-synthetic", params, cls, {"container": fmt, "codec": codec, "options": options})


def _ssv_frames_count(frames: int, rng: np.random.Generator) -> int:
    return frames + int(rng.integers(0, frames // 2 + 1))  # real SSV videos vary in length


def _write_ssv(out: os.PathLike, version: int, classes: int, train_per_class: int, val_per_class: int, frames: int,
               size: int, fps: int, seed: int) -> dict:
    _check_args(classes, len(SSV_CLASSES), (train_per_class, val_per_class), frames, size)
    out = Path(out)
    prepare_out(out, __name__)
    w = _Writer(out)
    dataset = f"ssv{version}"
    code = DATASET_CODES[dataset]
    kinds = _permutation(classes, seed, code)  # label k (category.txt order) shows SSV_CLASSES[kinds[k]]
    templates = [SSV_CLASSES[kinds[k]][0] for k in range(classes)]
    plain = [t.replace("[", "").replace("]", "") for t in templates]
    category = templates if version == 2 else plain
    by_name = sorted(range(classes), key=lambda k: plain[k])  # labels JSON: alphabetical numbering
    json_index = {plain[k]: str(j) for j, k in enumerate(by_name)}
    fmt, codec, options = SSV2_CODEC
    next_id = 1000 + 100000 * (version - 1)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        lines, entries = [], []
        for label in range(classes):
            for i in range(per_class):
                # No label in the seed: video i of every class is the same scene (the same frames), in the
                # class's order -- minimal pairs, so that nothing but the order tells the classes apart.
                rng = np.random.default_rng([seed, code, SPLITS[split], i])
                n = _ssv_frames_count(frames, rng)
                video = render_ssv_video(kinds[label], n, size, rng)
                vid = str(next_id + (SPLITS[split] * classes + label) * max(train_per_class, val_per_class, 1) + i)
                for t, frame in enumerate(video):
                    w.write(f"{vid}/{FRAME_TEMPLATE.format(t + 1)}", encode_jpeg(frame))
                lines.append(f"{vid} {n} {label}")
                if version == 2:
                    w.write(f"{vid}.webm", encode_video(list(video), fmt, codec, fps, options))
                    entries.append({"id": vid, "label": templates[label].replace("[something]", "a ball"),
                                    "template": templates[label], "placeholders": ["a ball"]})
        split_name = "train" if split == "train" else "validation"
        w.text(LIST_NAME.format(version=version, split=split_name), "\n".join(lines) + "\n")
        if version == 2:
            w.text(V2_SPLIT_JSON.format(split=split_name), json.dumps(entries, indent=1) + "\n")
    if version == 2:
        w.text(V2_LABELS, json.dumps(json_index, indent=1) + "\n")
    w.text("category.txt", "\n".join(category))  # like sthv2_category.txt: no newline after the last line
    params = dict(classes=classes, train_per_class=train_per_class, val_per_class=val_per_class, frames=frames,
                  size=size, fps=fps, seed=seed)
    cls = [{"label": k, "name": category[k], "order": SSV_CLASSES[kinds[k]][1],
            **({"labels_json_index": int(json_index[plain[k]])} if version == 2 else {})} for k in range(classes)]
    extra = {"container": fmt, "codec": codec, "options": options} if version == 2 else {"frames": "jpeg q90"}
    return w.manifest(f"{dataset}-synthetic", params, cls, extra)


def write_synthetic_ssv2(out: os.PathLike, classes: int = 4, train_per_class: int = 8, val_per_class: int = 4,
                         frames: int = 16, size: int = 64, fps: int = 12, seed: int = 0) -> dict:
    """Write a synthetic Something-Something V2 set (webm + JSON, and frame folders + split lists)."""
    return _write_ssv(out, 2, classes, train_per_class, val_per_class, frames, size, fps, seed)


def write_synthetic_ssv1(out: os.PathLike, classes: int = 4, train_per_class: int = 8, val_per_class: int = 4,
                         frames: int = 16, size: int = 64, seed: int = 0) -> dict:
    """Write a synthetic Something-Something V1 set (JPEG frame folders + split lists)."""
    return _write_ssv(out, 1, classes, train_per_class, val_per_class, frames, size, 12, seed)
