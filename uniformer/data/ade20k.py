"""ADE20K (SceneParsing, as mmseg reads it): ``images/{training,validation}/*.jpg`` with
``annotations/{training,validation}/*.png`` of the same stem; annotations are single-channel (indexed or
grey) PNGs with 0 = "other" and 1..150 = the classes."""
import os
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

from ..engine.seg_protocol import reduce_zero_label
from .images import open_image

SPLITS = {"train": "training", "val": "validation"}
NUM_CLASSES = 150


def class_names(root: os.PathLike) -> Optional[List[str]]:
    """The 150 class names of ``root/objectInfo150.txt`` (shipped in ADEChallengeData2016: a header, then
    ``Idx Ratio Train Val Name`` per class, tab-separated, names like ``building, edifice``), each name's first
    synonym as mmseg lists them; None when the file is absent."""
    path = Path(root) / "objectInfo150.txt"
    if not path.is_file():
        return None
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    names = [r[-1].split(",")[0].strip() for r in sorted(rows, key=lambda r: int(r[0]))]
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{path}: {len(names)} classes, expected {NUM_CLASSES} (Idx Ratio Train Val Name rows)")
    return names


def split_dir(split: str) -> str:
    """``train``/``val`` (or the folder names themselves) -> ``training``/``validation``."""
    return SPLITS.get(split, split)


def list_pairs(root: os.PathLike, split: str) -> List[Tuple[Path, Path]]:
    """(image, annotation) paths of a split, sorted by name; an image without annotation is an error."""
    root, sub = Path(root), split_dir(split)
    pairs = []
    for img in sorted((root / "images" / sub).glob("*.jpg")):
        ann = root / "annotations" / sub / f"{img.stem}.png"
        if not ann.is_file():
            raise FileNotFoundError(f"{ann}: annotation of {img} is missing (run `uniformer data check`)")
        pairs.append((img, ann))
    return pairs


def read_image(path: os.PathLike) -> np.ndarray:
    """RGB uint8 (H, W, 3), strictly decoded (a truncated file raises ``BadImageError``); a writable copy."""
    return np.array(open_image(path))


def read_annotation(path: os.PathLike) -> np.ndarray:
    """The raw label indices (H, W) uint8 (0 = other); the palette of an indexed PNG is not applied."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(f"{path}: annotation mode {im.mode}, expected an indexed (P) or grey (L) PNG")
        return np.array(im)


class ADE20K:
    """Indexable (image RGB uint8, label) pairs of one split; ``reduce_zero_label`` (the published setting) maps
    0 -> 255 (ignored) and k -> k - 1."""

    def __init__(self, root: os.PathLike, split: str = "val", reduce_zero_label: bool = True):
        self.pairs = list_pairs(root, split)
        self.reduce_zero_label = reduce_zero_label

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        img, ann = self.pairs[i]
        label = read_annotation(ann)
        if self.reduce_zero_label:
            label = reduce_zero_label(label)
        return read_image(img), label
