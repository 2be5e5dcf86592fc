"""The data sets the engine trains and evaluates on: one adapter per kind (image folders, video split lists).

``uniformer train|eval <dataset>`` names a data set; each belongs to one paper table, under which its results
and MLflow runs are filed::

    imagenet -> imagenet      kinetics400, kinetics600 -> kinetics      ssv1, ssv2 -> something

An adapter reads ``data.<dataset>.<profile>`` of params.yaml and answers, for a model: the class names in
label order, the training set (random augmentation), the validation set the trainer scores every epoch
(one view per sample) and the test set of the published protocol (``uniformer eval``: ImageNet's centre
crop; for video every temporal clip x spatial crop of the model's pretrained cfg, scores averaged by the
evaluator). Video clip settings come from the model's pretrained cfg (frames, stride or segments, crop,
views), overridden by the non-null keys of the recipe's ``clip`` block.
"""
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..config import ConfigError

DATASET_TABLE = {"imagenet": "imagenet", "kinetics400": "kinetics", "kinetics600": "kinetics",
                 "ssv1": "something", "ssv2": "something"}
DATASETS = tuple(DATASET_TABLE)
VIDEO_DATASETS = ("kinetics400", "kinetics600", "ssv1", "ssv2")
CLIP_KEYS = ("num_frames", "stride", "sampling", "crop_size", "train_scales", "test_scale", "random_flip",
             "target_fps", "use_offset", "temporal_clips", "spatial_crops")


def table_of(dataset: str) -> str:
    if dataset not in DATASET_TABLE:
        raise ConfigError(f"unknown data set {dataset!r} (known: {', '.join(DATASETS)})")
    return DATASET_TABLE[dataset]


def is_video(dataset: str) -> bool:
    return dataset in VIDEO_DATASETS


def _under(root: Path, path: Optional[str]) -> Optional[Path]:
    """``path`` as given when absolute, else relative to the data root (where the user keeps the lists)."""
    if not path:
        return None
    p = Path(path)
    return p if p.is_absolute() else root / p


class ImageData:
    """ImageNet-style folders: ``ROOT/{train,val}/<wnid>/*``; classes = sorted wnids of ``train``."""

    video = False

    def __init__(self, dataset: str, root: os.PathLike, data_cfg: Dict[str, Any]):
        self.dataset, self.root, self.cfg = dataset, Path(root), data_cfg

    def ensure(self) -> None:
        """Smoke profile: write the synthetic set of ``data.<dataset>.<profile>.synth`` if the root has none."""
        if (self.root / "manifest.json").is_file() or (self.root / "train").is_dir() or not self.cfg.get("synth"):
            return
        from ..data.synth_imagenet import write_synthetic_imagenet

        s = self.cfg["synth"]
        print(f"{self.root}: no data set; writing the synthetic one ({s})", file=sys.stderr)
        write_synthetic_imagenet(self.root, int(s["classes"]), int(s["train_per_class"]), int(s["val_per_class"]),
                                 int(s["size"]), int(s["seed"]))

    def classes(self) -> List[str]:
        from ..data.imagenet import ImageNetFolder

        split = "train" if (self.root / "train").is_dir() else "val"
        return ImageNetFolder(self.root, split).classes

    def class_index_desc(self) -> str:
        return "sorted wnid folders of train/"

    def train_set(self, cfg, model, classes):
        from ..data.imagenet import ImageNetFolder
        from .recipe import build_train_transform

        ds = ImageNetFolder(self.root, "train", class_index=classes)
        ds.transform = build_train_transform(cfg, model)
        return ds

    def val_set(self, cfg, model, classes):
        from ..data.imagenet import ImageNetFolder
        from .recipe import build_eval_transform, train_img_size

        ds = ImageNetFolder(self.root, "val", class_index=classes)
        ds.transform = build_eval_transform(model, img_size=train_img_size(cfg, model))
        return ds

    def test_set(self, eval_cfg, model, classes, img_size=None):
        from ..data.imagenet import ImageNetFolder
        from .recipe import build_eval_transform

        ds = ImageNetFolder(self.root, "val", class_index=classes)
        ds.transform = build_eval_transform(model, img_size, eval_cfg.get("crop_pct"))
        return ds

    def manifest(self) -> str:
        from ..data.imagenet import dataset_manifest_hash

        return dataset_manifest_hash(self.root)


class VideoData:
    """Kinetics (``path,label`` / ``path label`` lists or the annotation CSV over videos) and
    Something-Something (``id frames label`` lists over frame folders, or V2's JSON over webm files).

    ``data.<dataset>.<profile>`` keys: ``root``, ``train_list``, ``val_list`` (relative to the root unless
    absolute), ``class_index`` (file or list of files, the class order of the published checkpoints;
    null = labels as the lists give them), ``labels`` (SSV2 labels JSON), ``frame_template``, ``synth``.
    """

    video = True

    def __init__(self, dataset: str, root: os.PathLike, data_cfg: Dict[str, Any]):
        self.dataset, self.root, self.cfg = dataset, Path(root), data_cfg
        for key in ("train_list", "val_list"):
            if not data_cfg.get(key):
                raise ConfigError(f"params.yaml: data.{dataset}.<profile> needs '{key}' (a split list under the "
                                  f"data root, e.g. train.csv / val.csv for Kinetics)")

    def ensure(self) -> None:
        """Smoke profile: write the synthetic set of ``synth`` if the root has no manifest / val list yet."""
        if (self.root / "manifest.json").is_file() or self.list_path("val").is_file() or not self.cfg.get("synth"):
            return
        from ..data import synth_video

        s = dict(self.cfg["synth"])
        kind = s.pop("dataset")
        writer = {"kinetics": synth_video.write_synthetic_kinetics, "ssv1": synth_video.write_synthetic_ssv1,
                  "ssv2": synth_video.write_synthetic_ssv2}[kind]
        print(f"{self.root}: no data set; writing the synthetic {kind} one ({s})", file=sys.stderr)
        writer(self.root, **s)

    def list_path(self, split: str) -> Path:
        return _under(self.root, self.cfg[f"{split}_list"])

    def class_index_paths(self) -> Optional[List[Path]]:
        ci = self.cfg.get("class_index")
        if not ci:
            return None
        return [_under(self.root, p) for p in ([ci] if isinstance(ci, str) else ci)]

    def class_index_desc(self) -> str:
        paths = self.class_index_paths()
        return ", ".join(map(str, paths)) if paths else "labels as given by the split lists (no class index)"

    def classes(self) -> List[str]:
        from ..data.video import load_video_class_index

        paths = self.class_index_paths()
        if paths:
            return load_video_class_index(paths)
        # no class index: label k is simply "k" (enough to train; an official checkpoint needs the real order)
        items = self._read("train" if self.list_path("train").is_file() else "val", None)
        return [str(k) for k in range(max(it.label for it in items) + 1)]

    def _read(self, split: str, classes):
        from ..data.kinetics import read_kinetics_split
        from ..data.something import read_something_split
        from ..data.video import FRAME_TEMPLATE

        path = self.list_path(split)
        if not path.is_file():
            raise ConfigError(f"{path}: split list not found; set data.{self.dataset}.<profile>.{split}_list or "
                              f"check the data root ({self.root}); `uniformer data check {self.dataset}` lists "
                              "what is there")
        if self.dataset.startswith("kinetics"):
            return read_kinetics_split(path, self.root, classes)
        return read_something_split(path, self.root, classes, _under(self.root, self.cfg.get("labels")),
                                    self.cfg.get("frame_template") or FRAME_TEMPLATE)

    def clip_spec(self, model, clip: Optional[Dict[str, Any]] = None):
        """The model's published clip protocol, with the non-null ``clip`` keys of the recipe on top."""
        from ..data.video import ClipSpec

        over = {k: (tuple(v) if k == "train_scales" else v) for k, v in (clip or {}).items()
                if v is not None and k in CLIP_KEYS}
        unknown = sorted(set(clip or {}) - set(CLIP_KEYS))
        if unknown:
            raise ConfigError(f"clip: unknown key(s) {unknown} (known: {list(CLIP_KEYS)})")
        cfg = dict(model.pretrained_cfg)
        spec = ClipSpec.from_pretrained_cfg(cfg)
        if "crop_size" in over and "train_scales" not in over:  # keep SlowFast's 256/224 jitter ratio
            c = int(over["crop_size"])
            over["train_scales"] = (c, c) if spec.train_scales[0] == spec.crop_size else \
                (round(c * spec.train_scales[0] / spec.crop_size), round(c * spec.train_scales[1] / spec.crop_size))
        return ClipSpec.from_pretrained_cfg(cfg, **over)

    def _dataset(self, split: str, mode: str, spec, classes, augment=None):
        from ..data.video import VideoDataset

        return VideoDataset(self._read(split, classes), spec, mode, classes, name=str(self.list_path(split)),
                            augment=augment)

    def train_set(self, cfg, model, classes):
        """Random clips with the recipe's ``aug`` block (RandAugment, relative-area crop, erasing, repeats)."""
        from ..data.video_augment import ClipAugment

        return self._dataset("train", "train", self.clip_spec(model, cfg.get("clip")), classes,
                             ClipAugment.from_cfg(cfg.get("aug")))

    def val_set(self, cfg, model, classes):
        return self._dataset("val", "val", self.clip_spec(model, cfg.get("clip")), classes)

    def test_set(self, eval_cfg, model, classes, clip=None):
        """Every published view of each val video: ``(V, C, T, H, W)`` per sample."""
        return self._dataset("val", "test", self.clip_spec(model, {**(clip or {}), **views_override(eval_cfg)}),
                             classes)

    def manifest(self) -> str:
        """sha256 of the synthetic manifest, else of the split lists and class index (cheap, content-based)."""
        import hashlib
        import json

        m = self.root / "manifest.json"
        if m.is_file():
            return json.loads(m.read_text()).get("sha256") or hashlib.sha256(m.read_bytes()).hexdigest()
        h = hashlib.sha256()
        for p in [self.list_path("train"), self.list_path("val")] + (self.class_index_paths() or []):
            if p.is_file():
                h.update(p.name.encode() + b"\0" + p.read_bytes())
        return h.hexdigest()


def views_override(eval_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """``temporal_clips`` / ``spatial_crops`` / ``test_scale`` set in ``eval.<dataset>.<profile>`` (null = published)."""
    return {k: eval_cfg[k] for k in ("temporal_clips", "spatial_crops", "test_scale") if eval_cfg.get(k) is not None}


def open_data(dataset: str, root: os.PathLike, data_cfg: Dict[str, Any]):
    table_of(dataset)
    return (VideoData if is_video(dataset) else ImageData)(dataset, root, data_cfg)


def describe_clip(spec) -> Dict[str, Any]:
    """The clip protocol as flat values (for config.yaml, metrics.json and MLflow)."""
    return {"num_frames": spec.num_frames, "sampling": spec.sampling,
            "stride": spec.stride if spec.sampling == "dense" else None, "crop_size": spec.crop_size,
            "train_scales": list(spec.train_scales), "test_scale": spec.test_scale or spec.crop_size,
            "temporal_clips": spec.temporal_clips, "spatial_crops": spec.spatial_crops, "views": spec.num_views,
            "random_flip": spec.random_flip, "use_offset": spec.use_offset, "target_fps": spec.target_fps}


def check_classes(expected: Sequence[str], found: Sequence[str], where: str) -> None:
    """Our checkpoint's class order must be the data's: a different order scores near zero without an error."""
    if list(expected) != list(found):
        diff = next(i for i, (a, b) in enumerate(zip(list(expected) + [None] * len(found),
                                                      list(found) + [None] * len(expected))) if a != b)
        raise ConfigError(f"{where}: the checkpoint was trained with another class order (first difference at "
                          f"label {diff}); evaluate with the class index it was trained with")
