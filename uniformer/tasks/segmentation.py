"""Semantic segmentation: ADE20K (the paper's Semantic FPN and UperNet rows).

Data set ``ade20k``: the mmseg layout ``images/{training,validation}/*.jpg`` + ``annotations/.../*.png``
(``data.ade20k``), its checker and synthetic twin (``data.check_ade20k``, ``data.synth_ade20k``); the ``ade20k``
table: one row per published experiment (``models.dense_catalog``: Semantic FPN and UperNet,
each global-trained model under its three test configs), mIoU single scale and MS+flip, whole-segmentor
params and GFLOPs at 512x2048.

Training follows mmseg 0.13's ADE20K pipeline (``SegTrainSet``); evaluation the published protocol of
``engine.seg_protocol`` (whole image at original resolution, one confusion matrix: mIoU / mAcc / aAcc in %).
"""
import json
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from ..config import ConfigError
from ..data.ade20k import ADE20K, NUM_CLASSES, class_names
from ..data.check_ade20k import check_ade20k
from ..data.imagenet import dataset_manifest_hash
from ..data.synth_ade20k import write_synthetic_ade20k
from ..data.synth_out import data_source as read_source
from ..engine.seg_metrics import ConfusionMatrix
from ..engine.seg_protocol import IGNORE, IMG_SCALE, normalize, predict, rescale_size, resize_uint8
from ..models.dense_catalog import dense_entries
from ..models.segmentation import build_segmentor, segmentation_loss
from .base import (Column, DatasetSpec, TableSpec, Task, accuracy_columns, register_dataset, register_table,
                   register_task, speed_columns)
from .dense_data import DenseData, check_action, synth_action
from .dense_table import DenseTableMixin, init_backbone


# --- training pipeline (mmseg 0.13: Resize ratio_range, RandomCrop cat_max_ratio, RandomFlip,
#     PhotoMetricDistortion, Normalize, Pad) ---------------------------------------------------------------------
def random_crop_box(label: np.ndarray, crop: int, cat_max_ratio: float, rng: random.Random) -> Tuple[int, int]:
    """Top-left of a ``crop`` square; up to 10 tries for one where no single class (ignored pixels aside) covers
    more than ``cat_max_ratio`` of the crop, as mmseg's RandomCrop (the last try is kept)."""
    h, w = label.shape
    for _ in range(10):
        y, x = rng.randint(0, max(h - crop, 0)), rng.randint(0, max(w - crop, 0))
        if cat_max_ratio >= 1.0:
            break
        labels, counts = np.unique(label[y:y + crop, x:x + crop], return_counts=True)
        counts = counts[labels != IGNORE]
        if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
            break
    return y, x


def photometric_distortion(img: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """mmseg PhotoMetricDistortion on a (3, H, W) float 0-255 image: brightness ±32, contrast 0.5-1.5 (before or
    after the colour steps), saturation 0.5-1.5, hue ±18/180 of the circle, each with probability 0.5. mmseg does
    saturation and hue in cv2's HSV; torchvision's blend-with-grey saturation and its hue shift stand in (cv2 is
    not a dependency)."""
    def contrast(x):
        return (x * rng.uniform(0.5, 1.5)).clamp(0, 255) if rng.random() < 0.5 else x
    if rng.random() < 0.5:
        img = (img + rng.uniform(-32, 32)).clamp(0, 255)
    contrast_first = rng.random() < 0.5
    if contrast_first:
        img = contrast(img)
    x = img / 255
    if rng.random() < 0.5:
        x = TF.adjust_saturation(x, rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        x = TF.adjust_hue(x, rng.uniform(-18, 18) / 180)
    img = x * 255
    return img if contrast_first else contrast(img)


class SegTrainSet(torch.utils.data.Dataset):
    """(normalised crop (3, c, c), label (c, c) int64 with 255 = ignored) per training image."""

    def __init__(self, data: ADE20K, cfg: Dict[str, Any]):
        self.data, self.cfg = data, cfg

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        rng = random.Random(int(torch.randint(0, 2**31 - 1, (1,))))  # from torch's (per-worker, seeded) stream
        img, label = self.data[i]
        cfg = self.cfg
        long_side, short_side = cfg["img_scale"]
        ratio = rng.uniform(*cfg["ratio_range"])
        size = rescale_size(*img.shape[:2], (int(long_side * ratio), int(short_side * ratio)))
        img = resize_uint8(img, size)
        label = F.interpolate(torch.from_numpy(label)[None, None].float(), size=size, mode="nearest")[0, 0]
        label = label.to(torch.uint8).numpy()
        crop = int(cfg["crop_size"])
        y, x = random_crop_box(label, crop, float(cfg["cat_max_ratio"]), rng)
        img, label = img[y:y + crop, x:x + crop], label[y:y + crop, x:x + crop]
        if rng.random() < float(cfg["hflip"]):
            img, label = img[:, ::-1], label[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
        if cfg["photometric"]:
            x = photometric_distortion(x, rng)
        x = normalize(x.permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())[0]
        target = torch.from_numpy(np.ascontiguousarray(label)).long()
        ph, pw = crop - x.shape[1], crop - x.shape[2]  # Pad to the crop size: image 0, label ignored
        if ph > 0 or pw > 0:
            x = F.pad(x, (0, pw, 0, ph), value=0.0)
            target = F.pad(target, (0, pw, 0, ph), value=IGNORE)
        return x, target


class SegTestSet(torch.utils.data.Dataset):
    """({image: RGB uint8 at original size, protocol}, label at original size) per image: the protocol travels
    with the sample because ``Task.predict`` sees only the batch."""

    def __init__(self, data: ADE20K, protocol: Dict[str, Any]):
        self.data, self.protocol = data, protocol

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        img, label = self.data[i]
        return {"image": img, **self.protocol}, label


# --- the adapter -------------------------------------------------------------------------------------------------
class ADE20KData(DenseData):
    """ADE20K in the mmseg layout, labels with ``reduce_zero_label`` (0 -> ignored, k -> k - 1).

    ``data.ade20k.<profile>`` keys: ``root``, ``source``, ``synth`` (the synthetic set the smoke profile writes
    when the root is empty). Classes: our synthetic set's (its manifest says how many), else the 150 of ADE20K,
    named from the copy's ``objectInfo150.txt`` when it has one."""

    marker = "images"
    writer = staticmethod(write_synthetic_ade20k)

    def _synthetic_classes(self) -> Optional[int]:
        manifest = self.root / "manifest.json"
        if read_source(self.root) == "real" or not manifest.is_file():
            return None
        return int(json.loads(manifest.read_text())["params"]["classes"])

    def classes(self) -> List[str]:
        n = self._synthetic_classes()
        if n is None:  # the real set: its objectInfo150.txt names, if the copy has it
            try:
                names = class_names(self.root)
            except ValueError as e:
                raise ConfigError(f"{e}; restore the file from ADEChallengeData2016 or remove it") from None
            if names:
                return names
        return [f"class_{k + 1:03d}" for k in range(n or NUM_CLASSES)]  # annotation value k + 1

    def class_index_desc(self) -> str:
        return "ADE20K annotation value - 1 (reduce_zero_label; 0 'other' ignored)"

    def eval_classes(self, trained, checkpoint, num_classes):
        if trained is not None:
            return trained
        names = self.classes()  # an official checkpoint: the data set's order (150 on the real set)
        return names if len(names) == num_classes else [f"class_{k + 1:03d}" for k in range(num_classes)]

    def _split(self, split: str) -> ADE20K:
        data = ADE20K(self.root, split)
        if not len(data):
            raise ConfigError(f"{self.root}/images/{'training' if split == 'train' else 'validation'}: no .jpg "
                              "images; check the root (`uniformer data check ade20k --root ...`)")
        return data

    def train_set(self, cfg, model, classes):
        return SegTrainSet(self._split("train"), cfg)

    def val_set(self, cfg, model, classes):
        return SegTestSet(self._split("val"), test_protocol({}, cfg))

    def train_protocol(self, cfg, model, train_set) -> Dict[str, Any]:
        return {"crop_size": int(cfg["crop_size"]), "img_scale": list(cfg["img_scale"])}

    def test_set(self, eval_cfg, model, classes, train_cfg):
        protocol = test_protocol(eval_cfg, train_cfg)
        ms_views = len(protocol["ms_ratios"] or ()) * (2 if protocol["ms_flip"] else 1)
        return SegTestSet(self._split("val"), protocol), {**protocol, "views": 1 + ms_views}

    def manifest(self) -> str:
        return dataset_manifest_hash(self.root)


def test_protocol(eval_cfg: Dict[str, Any], train_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The published tests of the model: single scale at ``img_scale`` (eval, else training, else (2048, 512)),
    and MS+flip over ``ms_ratios`` with ``ms_flip`` where the eval sets them (null: single scale only);
    ``align``: Semantic FPN's AlignResize (``fpn_*`` models)."""
    scale = eval_cfg.get("img_scale") or train_cfg.get("img_scale") or IMG_SCALE
    align = eval_cfg.get("align")
    if align is None:
        align = str(train_cfg.get("model", eval_cfg.get("model", ""))).startswith("fpn")
    ms = eval_cfg.get("ms_ratios")
    return {"img_scale": [int(s) for s in scale], "align": bool(align),
            "ms_ratios": [float(r) for r in ms] if ms else None, "ms_flip": bool(ms and eval_cfg.get("ms_flip"))}


# --- the task ------------------------------------------------------------------------------------------------------
class SegMeter:
    """Confusion matrices at original resolution (additive: one all-reduce) of the single-scale test and, where
    run, the MS+flip one -> mIoU, mAcc, aAcc in % (``*_ms``: MS+flip)."""

    def __init__(self, num_classes: int):
        self.cm, self.cm_ms = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
        self.n = self.n_ms = 0

    def update(self, preds: Sequence[Tuple[np.ndarray, Optional[np.ndarray]]],
               labels: Sequence[np.ndarray]) -> None:
        """``preds``: (single-scale, MS+flip or None) label maps per image (``SemanticSegmentation.predict``)."""
        for (ss, ms), gt in zip(preds, labels):
            self.cm.add(ss, np.asarray(gt))
            self.n += 1
            if ms is not None:
                self.cm_ms.add(ms, np.asarray(gt))
                self.n_ms += 1

    def as_vector(self) -> torch.Tensor:
        counts = torch.tensor([self.n, self.n_ms], dtype=torch.float64)
        return torch.cat([counts, *(torch.from_numpy(cm.mat.ravel()).double() for cm in (self.cm, self.cm_ms))])

    def load_vector(self, v: torch.Tensor) -> "SegMeter":
        self.n, self.n_ms = int(v[0]), int(v[1])
        mats = v[2:].round().long().numpy().reshape(2, *self.cm.mat.shape)
        self.cm.mat, self.cm_ms.mat = mats[0], mats[1]
        return self

    def summary(self) -> Dict[str, float]:
        # plain floats: numpy scalars would not load back from a checkpoint with weights_only=True
        out = {**{k: float(v) for k, v in self.cm.summary().items()}, "samples": self.n}
        if self.n_ms:
            out.update({f"{k}_ms": float(v) for k, v in self.cm_ms.summary().items()})
        return out

    def per_class_csv(self, classes: Sequence[str]) -> str:
        tests = [("", self.cm.per_class())] + ([("_ms", self.cm_ms.per_class())] if self.n_ms else [])
        header = "label,class," + ",".join(f"iou{t},acc{t}" for t, _ in tests)
        rows = [header] + [f"{k},{name}," + ",".join(f"{100 * pc['iou'][k]:.4f},{100 * pc['acc'][k]:.4f}"
                                                     for _, pc in tests)
                           for k, name in enumerate(classes[:self.cm.num_classes])]
        return "\n".join(rows) + "\n"


class SemanticSegmentation(DenseTableMixin, Task):
    name = "semantic_segmentation"
    # mmseg training pipeline; decay_*: the scheduler's step milestones / poly power, no_decay_keys: mmcv's
    # custom_keys (``engine.recipe``)
    recipe_keys = ("img_scale", "ratio_range", "crop_size", "cat_max_ratio", "hflip", "photometric",
                   "backbone_init", "no_decay_keys", "decay_milestones", "decay_rate")
    metrics = ("mIoU", "mAcc", "aAcc")
    optional_metrics = ("mIoU_ms", "mAcc_ms", "aAcc_ms")  # where the eval runs MS+flip (``ms_ratios``)

    def build_model(self, cfg, num_classes):
        model = build_segmentor(cfg["model"], num_classes, drop_path_rate=float(cfg["drop_path"]),
                                **(cfg.get("model_kwargs") or {}))
        init_backbone(model.backbone, cfg.get("backbone_init"))
        return model

    def create_model(self, name, num_classes, model_kwargs):
        return build_segmentor(name, num_classes, **model_kwargs)

    def chance_level(self, num_classes):
        return None  # depends on the class areas of the set (no single "no information" mIoU)

    def build_loss(self, cfg, num_classes):
        return segmentation_loss  # CE, ignore 255, + 0.4 x the auxiliary head's (UperNet)

    def num_outputs(self, state_dict, checkpoint):
        if "decode_head.conv_seg.weight" not in state_dict:
            raise ConfigError(f"{checkpoint}: no decode_head.conv_seg.weight; not a segmentation checkpoint (an "
                              "official one: `uniformer checkpoint convert` it first)")
        return int(state_dict["decode_head.conv_seg.weight"].shape[0])

    def meter(self, num_classes, dataset=None):
        return SegMeter(num_classes)

    def collate(self, samples, targets):
        if isinstance(samples[0], torch.Tensor):  # training crops: one size
            return torch.stack(list(samples)), torch.stack(list(targets))
        return list(samples), list(targets)  # test: whole images of their own sizes

    def to_device(self, inputs, targets, device, channels_last):
        if isinstance(inputs, torch.Tensor):
            return super().to_device(inputs, targets, device, channels_last)
        return inputs, targets  # ``predict`` moves each rescaled image

    def train_loss(self, net, inputs, targets, loss_fn, mixup_fn):
        return loss_fn(net(inputs, heads=True), targets), int(inputs.shape[0])

    def predict(self, model, inputs):
        """(single-scale, MS+flip or None) label maps per image; the MS pass repeats the 1.0 view (~6% of its
        cost) to keep ``seg_protocol.predict`` one published test per call."""
        return [(predict(model, s["image"], (1.0,), False, s["align"], tuple(s["img_scale"])),
                 predict(model, s["image"], s["ms_ratios"], s["ms_flip"], s["align"], tuple(s["img_scale"]))
                 if s["ms_ratios"] else None) for s in inputs]

    def result_files(self, meter, classes):
        return {"per_class.csv": meter.per_class_csv(classes)}

    # --- paper table (reports/ade20k.md) and profile: the whole segmentor on one 512x2048 input ---
    extra_metrics = (("miou_ms", "mIoU_ms", "mIoU MS+flip (%)"),)
    plot_xlabel = "GFLOPs of the whole segmentor at 512x2048 (multiply-adds, log scale)"
    profile_noun = "512x2048 image"
    profile_section = "segmentation"  # profile.<settings>.segmentation (smoke: FLOPs only)
    report_legend = (
        "mIoU: one confusion matrix over the validation set at original resolution, 150 classes "
        "(reduce_zero_label); SS = the published single-scale test (UperNet: short side 512, Semantic FPN: aligned "
        "to a multiple of 32), MS+flip = ratios 0.5-1.75 with flip (`eval.ade20k.<settings>.ms_ratios`, "
        "`ms_flip`), both from the same evaluation. Params: the whole segmentor (UperNet's auxiliary head "
        "included, as published). GFLOPs: fvcore, backbone + neck + decode head (attention matmuls counted) on "
        "one 512x2048 input.")
    errata = {"fpn_hybrid_small": "Published 172 GFLOPs for Semantic FPN S-h14; the official code, counted the same "
                                  "way, gives 191.5 GFLOPs (the published figure does not match its own model)."}

    def report_columns(self, table):
        return ([Column("Model", "model", align="l"), Column("Params (M)", "params_m", compare="pct"),
                 Column("GFLOPs", "gflops", compare="pct")]
                + accuracy_columns(table.accuracy, table.accuracy_label) + self.metric_columns()
                + speed_columns("img/s") + [Column("Accuracy data", "data_source", align="l"),
                                            Column("Verdict", "verdict", align="l")])

    def profile_model(self, entry):
        return build_segmentor(entry.name)


TASK = register_task(SemanticSegmentation())
register_dataset(DatasetSpec(
    "ade20k", TASK, "ade20k", "ADE20K", ADE20KData, short="ADE", entries=lambda: dense_entries("ade20k"),
    check=check_action("ade20k", check_ade20k), synth=synth_action("ade20k", write_synthetic_ade20k),
    real_sources=("ade20k-val",)))
register_table(TableSpec("ade20k", "ADE20K semantic segmentation", TASK, ("ade20k",), short_title="ADE20K",
                         accuracy="miou", accuracy_label="mIoU SS (%)", metric="mIoU",
                         gate_metrics=("mIoU", "mIoU_ms")))  # the smoke bar (mIoU >= 50) holds both tests
