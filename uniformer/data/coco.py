"""COCO instance segmentation (``annotations/instances_{split}2017.json`` + ``{split}2017/``) for torchvision.

``CocoInstances[i]`` -> (image float CHW in [0, 1], target) with ``boxes`` (x1, y1, x2, y2), ``labels``
(1..K, 0 is torchvision's background), ``masks`` (N, H, W) uint8, ``image_id``, ``area``, ``iscrowd``.
Label L <-> the L-th smallest category id (mmdet's order, shifted by one for the background).

Crowd regions are left out of the training targets and kept as ``crowd_boxes`` (mmdet's ``gt_bboxes_ignore``);
the evaluation reads crowd annotations from the json itself, as pycocotools does. Boxes narrower or lower
than 1 px are dropped as mmdet does. Images are decoded with their EXIF orientation applied, as cv2 (mmcv)
reads them, so they match annotations made on the displayed image.
"""
import contextlib
import io
import os
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from PIL import Image, ImageOps

SPLIT_FILES = {"train": ("annotations/instances_train2017.json", "train2017"),
               "val": ("annotations/instances_val2017.json", "val2017")}


def coco_paths(root: os.PathLike, split: str) -> Tuple[Path, Path]:
    """(annotation file, image folder) of ``split`` under ``root``."""
    ann, images = SPLIT_FILES[split]
    return Path(root) / ann, Path(root) / images


def load_coco(ann_file: os.PathLike):
    """pycocotools ``COCO`` without its progress prints."""
    from pycocotools.coco import COCO  # lazy: pycocotools only where COCO data is read or scored
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(os.fspath(ann_file))


def read_image(path: os.PathLike) -> Image.Image:
    """RGB image in display orientation (EXIF applied)."""
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


class CategoryMap:
    """COCO category id <-> contiguous label (1..K; 0 is the background)."""

    def __init__(self, category_ids):
        self.cat_ids = sorted(category_ids)
        self._label = {c: i + 1 for i, c in enumerate(self.cat_ids)}

    def label(self, cat_id: int) -> int:
        return self._label[cat_id]

    def cat_id(self, label: int) -> int:
        return self.cat_ids[label - 1]


class CocoInstances(torch.utils.data.Dataset):
    def __init__(self, root: os.PathLike, split: str = "val", transforms=None, skip_empty: bool = False):
        """``skip_empty``: drop images without a usable non-crowd object (mmdet's ``filter_empty_gt`` for training)."""
        ann_file, self.image_dir = coco_paths(root, split)
        self.coco = load_coco(ann_file)
        self.categories = CategoryMap(self.coco.cats)
        self.transforms = transforms
        self.ids = sorted(self.coco.imgs)
        if skip_empty:
            self.ids = [i for i in self.ids
                        if any(self._usable(a, self.coco.imgs[i]) for a in self.coco.imgToAnns.get(i, []))]

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def _visible(ann: dict, info: dict) -> bool:
        """mmdet 2.11 ``_parse_ann_info``: a box overlapping the image, at least 1 px wide and high, area > 0."""
        x, y, w, h = ann["bbox"]
        overlap_w = max(0, min(x + w, info["width"]) - max(x, 0))
        overlap_h = max(0, min(y + h, info["height"]) - max(y, 0))
        return overlap_w * overlap_h > 0 and w >= 1 and h >= 1 and ann.get("area", 1) > 0

    @classmethod
    def _usable(cls, ann: dict, info: dict) -> bool:
        return not ann.get("iscrowd", 0) and cls._visible(ann, info)

    def target(self, image_id: int) -> Dict[str, torch.Tensor]:
        info = self.coco.imgs[image_id]
        anns = self.coco.imgToAnns.get(image_id, [])
        objs = [a for a in anns if self._usable(a, info)]
        crowd = [a for a in anns if a.get("iscrowd", 0) and self._visible(a, info)]  # mmdet's gt_bboxes_ignore

        def xyxy(items):
            b = torch.tensor([a["bbox"] for a in items], dtype=torch.float32).reshape(-1, 4)
            return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], dim=1)

        h, w = info["height"], info["width"]
        masks = np.stack([self.coco.annToMask(a) for a in objs]) if objs else np.zeros((0, h, w), np.uint8)
        return {"boxes": xyxy(objs),
                "labels": torch.tensor([self.categories.label(a["category_id"]) for a in objs], dtype=torch.int64),
                "masks": torch.from_numpy(masks),
                "area": torch.tensor([a["area"] for a in objs], dtype=torch.float32),
                "iscrowd": torch.zeros(len(objs), dtype=torch.int64),
                "crowd_boxes": xyxy(crowd),
                "image_id": torch.tensor(image_id)}

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        image = read_image(self.image_dir / self.coco.imgs[image_id]["file_name"])
        image = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
        target = self.target(image_id)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate(batch: List):
    """Detection batches are lists (images differ in size)."""
    return tuple(zip(*batch))
