"""A small synthetic data set in the COCO keypoints layout, for smoke runs and tests (no download).

Each image holds 1..3 stick figures on a noisy background: the 17 COCO joints of a jittered standing pose
(limbs as lines, joints as dots). Visibility flags follow COCO: 2 visible, 1 labelled but occluded (drawn
faint), 0 not labelled (0, 0, 0; also every joint outside the image). A person-box results file in the
published format (ground-truth boxes jittered, with scores, plus one false positive per image) stands in for
the detector's. Deterministic per seed; marker + ``manifest.json`` as every synthetic writer (``synth_out``).
"""
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..io import write_json
from .coco_pose import DET_FILE, KEYPOINTS, SKELETON, ann_file
from .synth_out import manifest_sha256, prepare_out

# A standing person in a unit box (x right, y down), facing the camera: their left is the image's right.
TEMPLATE = np.array([[.5, .08], [.55, .05], [.45, .05], [.6, .07], [.4, .07], [.68, .22], [.32, .22], [.75, .38],
                     [.25, .38], [.78, .52], [.22, .52], [.62, .55], [.38, .55], [.63, .75], [.37, .75], [.64, .95],
                     [.36, .95]])
SPLIT_CODES = {"train": 0, "val": 1}


def _person(rng, w: int, h: int):
    """Keypoints (17, 3) and box of one figure; joints outside the image get visibility 0."""
    ph = rng.uniform(0.4, 0.9) * h
    pw = ph * rng.uniform(0.4, 0.6)
    x0, y0 = rng.uniform(-0.1 * pw, w - 0.9 * pw), rng.uniform(0, h - ph)
    pts = TEMPLATE + rng.normal(0, 0.02, TEMPLATE.shape)
    xy = np.stack([x0 + pts[:, 0] * pw, y0 + pts[:, 1] * ph], -1)
    vis = np.where(rng.random(17) < 0.15, 1, 2)
    vis[rng.random(17) < 0.05] = 0
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    vis[~inside] = 0
    kp = np.concatenate([np.round(xy, 2), vis[:, None]], -1)
    kp[vis == 0] = 0
    box = [max(x0, 0.0), y0, min(x0 + pw, w) - max(x0, 0.0), ph]
    return kp, [round(float(v), 2) for v in box]


def _draw(img: Image.Image, kp: np.ndarray, colour) -> None:
    d = ImageDraw.Draw(img)
    for a, b in SKELETON:
        if kp[a - 1, 2] > 0 and kp[b - 1, 2] > 0:
            d.line([tuple(kp[a - 1, :2]), tuple(kp[b - 1, :2])], fill=colour, width=2)
    for x, y, v in kp:
        if v > 0:
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour if v == 2 else tuple(c // 3 for c in colour))


def write_synthetic_coco_pose(out: os.PathLike, train: int = 8, val: int = 4, size: int = 96, seed: int = 0) -> dict:
    """Write ``{train,val}2017/*.jpg``, ``annotations/person_keypoints_{train,val}2017.json`` and the val
    person-box file; return the manifest (written last)."""
    out = Path(out)
    prepare_out(out, __name__)
    files, ann_id, dets = [], 1, []
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(KEYPOINTS),
                "skeleton": [list(s) for s in SKELETON]}

    def put(rel: str, data: bytes):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
        files.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest()})

    for split, n in (("train", train), ("val", val)):
        images, anns = [], []
        for i in range(n):
            rng = np.random.default_rng([seed, SPLIT_CODES[split], i])
            h, w = size, int(size * rng.uniform(1.0, 1.4))
            bg = rng.uniform(40, 200, 3) + rng.normal(0, 12, (h, w, 3))
            img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
            image_id = SPLIT_CODES[split] * 100000 + i + 1
            for _ in range(int(rng.integers(1, 4))):
                kp, box = _person(rng, w, h)
                _draw(img, kp, tuple(int(c) for c in rng.integers(0, 256, 3)))
                anns.append({"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": box,
                             "area": round(box[2] * box[3], 2), "num_keypoints": int((kp[:, 2] > 0).sum()),
                             "keypoints": [float(v) if j % 3 < 2 else int(v) for j, v in enumerate(kp.ravel())]})
                ann_id += 1
                jitter = rng.normal(0, 0.05, 4) * [box[2], box[3], box[2], box[3]]
                if split == "val":
                    dets.append({"image_id": image_id, "category_id": 1, "bbox": [round(float(v), 2) for v in
                                 np.add(box, jitter)], "score": round(float(rng.uniform(0.5, 1)), 3)})
            if split == "val":  # a false positive, as a real detector has
                dets.append({"image_id": image_id, "category_id": 1, "score": round(float(rng.uniform(0, 0.3)), 3),
                             "bbox": [1.0, 1.0, w / 4, h / 4]})
            name = f"{image_id:012d}.jpg"
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=90)
            put(f"{split}2017/{name}", buf.getvalue())
            images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        coco = {"images": images, "annotations": anns, "categories": [category]}
        put(os.path.relpath(ann_file(out, split), out), json.dumps(coco, sort_keys=True).encode())
    put(DET_FILE, json.dumps(dets, sort_keys=True).encode())
    manifest = {"dataset": "coco-pose-synthetic", "generator": __name__,
                "params": dict(train=train, val=val, size=size, seed=seed),
                "files": sorted(files, key=lambda f: f["path"])}
    manifest["sha256"] = manifest_sha256(manifest)
    write_json(out / "manifest.json", manifest)
    return manifest
