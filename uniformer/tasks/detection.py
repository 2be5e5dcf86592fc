"""COCO detection and instance segmentation: Mask R-CNN on the UniFormer dense backbones (the paper's COCO rows).

Data set ``coco``: ``annotations/instances_{train,val}2017.json`` + ``{train,val}2017/`` (``data.coco``), its
checker and synthetic twin (``data.check_coco``, ``data.synth_coco``); the ``coco`` table: one row per published
experiment (``models.dense_catalog``: Mask R-CNN 1x / 3x+MS and Cascade Mask R-CNN 3x+MS), box and mask AP,
whole-detector params and GFLOPs at 800x1280 with the backbone's share.

Training follows mmdet 2.11's pipeline: keep-ratio resize to the recipe's ``img_scale`` (long, short) with mmcv's
rounding, flip 0.5, images without a usable object left out (``filter_empty_gt``); the model normalises and pads
to 32. The torchvision detector returns its loss dict in training, which ``train_loss`` sums. Evaluation is
mmdet's test (``models.detection``: resize inside the model, float-box mask paste) scored by pycocotools
(``engine.coco_eval``): bbox and segm AP, AP50, AP75, APs/m/l in %.
"""
import random
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError
from ..data.check_coco import check_coco
from ..data.coco import CategoryMap, CocoInstances, coco_paths, load_coco, read_image
from ..data.imagenet import dataset_manifest_hash
from ..data.synth_coco import write_synthetic_coco
from ..engine.coco_eval import STAT_NAMES, evaluate_results, to_coco_results
from ..models.convert import convert_checkpoint
from ..models.dense_catalog import dense_entries
from ..models.detection import TEST_SCALE, CountedForward, build_detector, mmcv_rescale_size, set_test_scale
from ..profiling.optimize import InferenceModel
from .base import (Column, DatasetSpec, TableSpec, Task, _to, accuracy_columns, register_dataset, register_table,
                   register_task, speed_columns)
from .dense_data import DenseData, check_action, synth_action
from .dense_table import DenseTableMixin, init_backbone

IOU_TYPES = {"box": "bbox", "mask": "segm"}  # metric prefix -> pycocotools iouType
MULTISCALE_KEYS = {"short_sides", "crop_short_sides", "crop_size"}  # train.coco.*.multiscale (``multiscale_sample``)


# --- training pipeline (mmdet 2.11: Resize keep_ratio, RandomFlip, Normalize / Pad in the model) ----------------
def resize_sample(image: torch.Tensor, target: Dict[str, torch.Tensor], scale) -> tuple:
    """mmdet ``Resize(keep_ratio=True)``: the image (0-1 float of uint8 values) bilinear on the uint8 grid, the
    masks nearest, the boxes by the per-axis factors, to the mmcv-rounded size for ``scale`` (long, short)."""
    h, w = image.shape[-2:]
    size = mmcv_rescale_size(h, w, (int(max(scale)), int(min(scale))))
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    image = (image * 255).round().clamp(0, 255) / 255
    masks = target["masks"]
    if len(masks):
        masks = F.interpolate(masks[None].float(), size=size, mode="nearest")[0].to(torch.uint8)
    else:
        masks = masks.new_zeros((0,) + size)
    factor = torch.tensor([size[1] / w, size[0] / h] * 2)
    return image, {**target, "boxes": target["boxes"] * factor, "masks": masks}


def hflip_sample(image: torch.Tensor, target: Dict[str, torch.Tensor]) -> tuple:
    """mmdet ``RandomFlip`` horizontal: x1' = w - x2, x2' = w - x1."""
    w = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


def random_crop_sample(image: torch.Tensor, target: Dict[str, torch.Tensor], crop_range, rng: random.Random) -> tuple:
    """mmdet ``RandomCrop(crop_type='absolute_range', allow_negative_crop=True)``: height and width each drawn
    from [min(side, lo), min(side, hi)], a random offset; boxes shifted and clipped to the crop, objects left
    without area dropped with their masks (a crop may hold none: torchvision trains on empty targets)."""
    h, w = image.shape[-2:]
    lo, hi = (int(v) for v in crop_range)
    ch, cw = rng.randint(min(h, lo), min(h, hi)), rng.randint(min(w, lo), min(w, hi))
    y0, x0 = rng.randint(0, h - ch), rng.randint(0, w - cw)
    boxes = target["boxes"] - torch.tensor([x0, y0, x0, y0], dtype=target["boxes"].dtype)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, cw)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, ch)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return image[:, y0:y0 + ch, x0:x0 + cw], {**target, "boxes": boxes[keep], "labels": target["labels"][keep],
                                              "masks": target["masks"][keep][:, y0:y0 + ch, x0:x0 + cw]}


def multiscale_sample(image: torch.Tensor, target: Dict[str, torch.Tensor], policy: Dict[str, Any], long_side: int,
                      rng: random.Random) -> tuple:
    """The 3x+MS (DETR-style) policy of the official configs, mmdet ``AutoAugment`` of two equally likely
    branches: a keep-ratio resize to a short side from ``short_sides``; or a resize to one from
    ``crop_short_sides``, a ``random_crop_sample`` in the ``crop_size`` range, and a resize to one from
    ``short_sides`` (long side at most ``long_side`` throughout)."""
    if rng.random() < 0.5:
        return resize_sample(image, target, (long_side, rng.choice(policy["short_sides"])))
    image, target = resize_sample(image, target, (long_side, rng.choice(policy["crop_short_sides"])))
    image, target = random_crop_sample(image, target, policy["crop_size"], rng)
    return resize_sample(image, target, (long_side, rng.choice(policy["short_sides"])))


class DetTrainSet(torch.utils.data.Dataset):
    """(resized, maybe flipped image (3, H, W) in [0, 1], {boxes, labels, masks}) per training image: at the
    recipe's ``img_scale``, or by its ``multiscale`` policy (``multiscale_sample``) when one is set."""

    def __init__(self, data: CocoInstances, cfg: Dict[str, Any]):
        self.data, self.scale, self.hflip = data, cfg["img_scale"], float(cfg["hflip"])
        self.multiscale = cfg.get("multiscale")

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        rng = random.Random(int(torch.randint(0, 2**31 - 1, (1,))))  # from torch's (per-worker, seeded) stream
        image, target = self.data[i]
        target = {k: target[k] for k in ("boxes", "labels", "masks")}
        if self.multiscale:
            image, target = multiscale_sample(image, target, self.multiscale, int(max(self.scale)), rng)
        else:
            image, target = resize_sample(image, target, self.scale)
        if rng.random() < self.hflip:
            image, target = hflip_sample(image, target)
        return image, target


class DetTestSet(torch.utils.data.Dataset):
    """(image at original size in [0, 1], {image_id}) per image: the model resizes (mmdet's test protocol)."""

    def __init__(self, root: Path, split: str):
        ann, self.image_dir = coco_paths(root, split)
        self.coco = load_coco(ann)
        self.categories = CategoryMap(self.coco.cats)
        self.ids = sorted(self.coco.imgs)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        image_id = self.ids[i]
        image = np.asarray(read_image(self.image_dir / self.coco.imgs[image_id]["file_name"])).copy()
        return torch.from_numpy(image).permute(2, 0, 1).float() / 255, {"image_id": image_id}


# --- the adapter -------------------------------------------------------------------------------------------------
class CocoData(DenseData):
    """COCO instances; ``data.coco.<profile>`` keys: ``root``, ``source``, ``synth`` (the synthetic set the smoke
    profile writes when the root is empty). Classes: the annotation categories by ascending id (label 1..K)."""

    writer = staticmethod(write_synthetic_coco)

    def _ann(self, split: str) -> Path:
        ann = coco_paths(self.root, split)[0]
        if not ann.is_file():
            raise ConfigError(f"{ann}: missing; check the root (`uniformer data check coco --root {self.root}`)")
        return ann

    def _classes_of(self, split: str) -> List[str]:
        cats = load_coco(self._ann(split)).cats
        return [cats[c]["name"] for c in sorted(cats)]

    def classes(self) -> List[str]:
        return self._classes_of("train")

    def class_index_desc(self) -> str:
        return "COCO category ids in ascending order (label 1..K; 0 = background)"

    def eval_classes(self, trained, checkpoint, num_classes):
        val = self._classes_of("val")
        if trained is not None and list(trained) != val:
            raise ConfigError(f"{checkpoint}: trained on categories {trained}, but {self._ann('val')} has {val}")
        if len(val) != num_classes:
            raise ConfigError(f"{checkpoint}: predicts {num_classes} classes, {self._ann('val')} has {len(val)} "
                              "categories")
        return val

    def train_set(self, cfg, model, classes):
        self._ann("train")
        data = CocoInstances(self.root, "train", skip_empty=True)  # mmdet's filter_empty_gt
        if not len(data):
            raise ConfigError(f"{self._ann('train')}: no image with a usable (non-crowd, >= 1 px) object")
        return DetTrainSet(data, cfg)

    def val_set(self, cfg, model, classes):
        set_test_scale(model, cfg["img_scale"])  # validation at the training scale
        self._ann("val")
        return DetTestSet(self.root, "val")

    def train_protocol(self, cfg, model, train_set) -> Dict[str, Any]:
        return {"img_scale": [int(s) for s in cfg["img_scale"]], "hflip": float(cfg["hflip"]),
                "multiscale": cfg.get("multiscale")}

    def test_set(self, eval_cfg, model, classes, train_cfg):
        scale = eval_cfg.get("img_scale") or train_cfg.get("img_scale") or TEST_SCALE
        set_test_scale(model, scale)
        self._ann("val")
        return DetTestSet(self.root, "val"), {"img_scale": [int(max(scale)), int(min(scale))]}

    def manifest(self) -> str:
        return dataset_manifest_hash(self.root)


# --- the task ------------------------------------------------------------------------------------------------------
class DetectionMeter:
    """COCO results (RLE masks, made per image so full-size masks never pile up) gathered over processes
    (``state`` / ``merge``); ``summary`` scores bbox and segm with pycocotools, in %."""

    def __init__(self, dataset: DetTestSet):
        self.coco, self.categories = dataset.coco, dataset.categories
        self.results: List[dict] = []
        self.image_ids: List[int] = []

    def update(self, outputs, targets) -> None:
        for out, t in zip(outputs, targets):
            self.image_ids.append(int(t["image_id"]))
            self.results += to_coco_results(self.image_ids[-1], out, self.categories)

    def state(self):
        return {"results": self.results, "image_ids": self.image_ids}

    def merge(self, states) -> "DetectionMeter":
        self.results = [r for st in states for r in st["results"]]
        self.image_ids = [i for st in states for i in st["image_ids"]]
        return self

    def summary(self) -> Dict[str, float]:
        stats = evaluate_results(self.coco, self.results, IOU_TYPES.values(), image_ids=self.image_ids)
        # pycocotools' -1 (no ground truth in an area range) -> 0, as the pose meter does
        return {**{f"{p}_{s.lower()}": 100.0 * max(stats[t][s], 0.0) for p, t in IOU_TYPES.items()
                   for s in STAT_NAMES}, "samples": len(self.image_ids)}


class InstanceSegmentation(DenseTableMixin, Task):
    name = "instance_segmentation"
    # img_scale (long, short) and hflip: the training pipeline; backbone_init: an ImageNet checkpoint (or null);
    # decay_*: the step schedule's milestones and factor (``engine.recipe``)
    recipe_keys = ("img_scale", "hflip", "multiscale", "backbone_init", "no_decay_keys", "decay_milestones",
                   "decay_rate")
    metrics = tuple(f"{p}_{s.lower()}" for s in STAT_NAMES for p in IOU_TYPES)  # box_ap, mask_ap, box_ap50, ...

    def check_recipe(self, cfg, where):
        if len(cfg["img_scale"]) != 2:
            raise ConfigError(f"params.yaml: {where}.img_scale {cfg['img_scale']}: give [long, short]")
        ms = cfg.get("multiscale")
        if ms and (set(ms) != MULTISCALE_KEYS or len(ms["crop_size"]) != 2 or ms["crop_size"][0] > ms["crop_size"][1]):
            raise ConfigError(f"params.yaml: {where}.multiscale {ms}: give null or {sorted(MULTISCALE_KEYS)} "
                              "(crop_size: [min, max])")

    def build_model(self, cfg, num_classes):
        model = build_detector(cfg["model"], num_classes, drop_path_rate=float(cfg["drop_path"]),
                               **(cfg.get("model_kwargs") or {}))
        set_test_scale(model, cfg["img_scale"])
        init_backbone(model.backbone.body, cfg.get("backbone_init"))
        return model

    def create_model(self, name, num_classes, model_kwargs):
        return build_detector(name, num_classes, **model_kwargs)

    def build_loss(self, cfg, num_classes):
        return None  # the detector computes its losses (``train_loss``)

    def from_official_layout(self, state_dict, model_name):
        if any(k.startswith(("roi_head.", "rpn_head.")) for k in state_dict):  # mmdet's names
            try:
                return convert_checkpoint(state_dict, model_name)
            except KeyError as e:  # a key of another config's layout
                raise ConfigError(f"an mmdet checkpoint that is not {model_name}'s layout: {e.args[0]}; pass the "
                                  "--model it was trained as") from None
        return state_dict

    def num_outputs(self, state_dict, checkpoint):
        for key in ("roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.0.cls_score.weight"):
            if key in state_dict:
                return int(state_dict[key].shape[0]) - 1  # torchvision's background row
        raise ConfigError(f"{checkpoint}: no roi_heads.box_predictor (ours) nor roi_head.bbox_head (an official mmdet "
                          "one, read with --model NAME); not a detection checkpoint this package reads")

    def meter(self, num_classes, dataset=None):
        return DetectionMeter(dataset)

    def chance_level(self, num_classes):
        return 0.0  # boxes without information overlap no object: AP 0

    def collate(self, samples, targets):
        return list(samples), list(targets)  # images of their own sizes; the model pads them

    def to_device(self, inputs, targets, device, channels_last):
        return [x.to(device, non_blocking=True) for x in inputs], _to(targets, device)

    def train_loss(self, net, inputs, targets, loss_fn, mixup_fn):
        losses = net(inputs, targets)  # torchvision: RPN + box + mask losses in training mode
        return sum(losses.values()), len(inputs)

    def predict(self, model, inputs):
        if isinstance(model, InferenceModel):  # eval's wrapper takes one tensor; the detector takes a list
            if model.precision != "fp32" or model.channels_last:
                raise ConfigError("detection evaluates in fp32 without channels_last (set eval.coco precision / "
                                  "channels_last)")
            model = model.model
        return model(inputs)

    # --- paper table (reports/coco.md) and profile: the whole detector on one 800x1280 image ---
    # the README publishes box and mask AP; AP50 (the smoke quality bar) is measured only
    extra_metrics = (("mask_ap", "mask_ap", "Mask AP (%)"), ("box_ap50", "box_ap50", "Box AP50"),
                     ("mask_ap50", "mask_ap50", "Mask AP50"))
    output_noun = "categories"
    plot_xlabel = "GFLOPs of the whole detector at 800x1280 (multiply-adds, log scale)"
    profile_noun = "800x1280 image"
    profile_section = "detection"  # profile.<settings>.detection (smoke: FLOPs only)
    profile_flops_parts = {"backbone_gmacs": "detector.backbone.body"}  # CountedForward.detector
    report_legend = (
        "AP: pycocotools bbox / segm AP (IoU 0.50:0.95) and AP50 in %, single scale (1333, 800) test, mmdet 2.11's "
        "test protocol. Params: the whole detector (torchvision keeps a background row in the box regression and "
        "mask logits: +4.4k params). GFLOPs: fvcore on what mmdet's get_flops.py counts (`forward_dummy`): "
        "backbone + FPN + RPN head on one 800x1280 image, the box head on 1000 RoIs and the mask head on 100 (each "
        "cascade stage), attention matmuls counted, RoIAlign and NMS not; backbone GFLOPs alone beside it.")

    def report_fields(self, table, entry, prof, ev, comparable):
        return {"backbone_gflops": prof.get("backbone_gflops") if prof else None,
                **self.metric_fields(entry, ev, comparable)}

    def report_columns(self, table):
        return ([Column("Model", "model", align="l"), Column("Params (M)", "params_m", compare="pct"),
                 Column("GFLOPs", "gflops", compare="pct"), Column("Backbone GFLOPs", "backbone_gflops", "{:.1f}")]
                + accuracy_columns(table.accuracy, table.accuracy_label) + self.metric_columns()
                + speed_columns("img/s") + [Column("Accuracy data", "data_source", align="l"),
                                            Column("Verdict", "verdict", align="l")])

    def profile_model(self, entry):
        return CountedForward(build_detector(entry.name))

    def profile_row_extra(self, result):
        return {"backbone_gflops": result.get("backbone_gmacs")}

    def profile_cells(self, row):
        return {**super().profile_cells(row), "Backbone GFLOPs": f"{row['backbone_gflops']:.1f}"}


TASK = register_task(InstanceSegmentation())
register_dataset(DatasetSpec(
    "coco", TASK, "coco", "COCO", CocoData, short="COCO", entries=lambda: dense_entries("coco_det"),
    check=check_action("coco", check_coco), synth=synth_action("coco", write_synthetic_coco),
    real_sources=("coco-val2017",)))
register_table(TableSpec("coco", "COCO object detection and instance segmentation (val2017)", TASK, ("coco",),
                         short_title="COCO", accuracy="box_ap", accuracy_label="Box AP (%)",
                         gate_metrics=("box_ap50", "mask_ap50")))  # the smoke bar: both AP50 >= 30
