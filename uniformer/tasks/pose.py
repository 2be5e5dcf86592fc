"""Top-down human pose: COCO keypoints (the paper's pose rows).

Data set ``coco_pose``: ``annotations/person_keypoints_{train,val}2017.json`` + ``{train,val}2017/`` and a
person-box results file (``data.coco_pose``), its checker and synthetic twin; the ``coco_pose`` table: one row
per published experiment (``models.dense_catalog``), AP / AP50 / AP75 / APm / APl / AR, whole-model GFLOPs
on one person crop.

Training crops come from the ground-truth person boxes with mmpose 0.16's augmentation (flip with the joint
pairs, half body, random scale / rotation, affine crop, Gaussian heatmaps); evaluation follows
``engine.pose_protocol`` (flip test with the shift, quarter-pixel decoding, rescoring, OKS-NMS) and scores
keypoint AP with pycocotools, on ground-truth boxes or a detection-results file (``det_file``: the paper's).
"""
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..config import ConfigError
from ..data.check_coco_pose import check_coco_pose
from ..data.coco_pose import KEYPOINTS, Instance, ann_file, load_instances
from ..data.images import open_image
from ..data.imagenet import dataset_manifest_hash
from ..data.synth_coco_pose import write_synthetic_coco_pose
from ..engine.pose_metrics import STATS, keypoint_ap, person_box_ap
from ..engine.pose_protocol import (FLIP_PAIRS, PIXEL_STD, crop_keypoints, decode, flip_test, gaussian_target,
                                    normalize_crop, oks_nms, rescore, warp_crop)
from ..models.dense_catalog import dense_entries
from ..models.pose import build_pose_model, joints_mse_loss, pose_input_size
from .base import (Column, DatasetSpec, TableSpec, Task, accuracy_columns, register_dataset, register_table,
                   register_task, speed_columns)
from .dense_data import DenseData, check_action, synth_action
from .dense_table import DenseTableMixin, init_backbone

UPPER_BODY = tuple(range(11))  # COCO joints 0-10: head, shoulders, arms (mmpose's upper_body_ids)


def affine_matrix(center, scale, rotation: float, image_size: Tuple[int, int]) -> np.ndarray:
    """mmpose get_affine_transform (no shift): the box ``center`` / ``scale`` (x200 px), rotated by ``rotation``
    degrees, onto the (width, height) crop; for rotation 0 it is ``pose_protocol.crop_matrix``."""
    s = image_size[0] / (scale[0] * PIXEL_STD)
    r = np.deg2rad(rotation)
    lin = s * np.array([[np.cos(r), np.sin(r)], [-np.sin(r), np.cos(r)]])  # s * R(-r): the box's rotated up -> up
    out = np.asarray(image_size, np.float64) * 0.5 - lin @ np.asarray(center, np.float64)
    return np.hstack([lin, out[:, None]])


def half_body(keypoints: np.ndarray, image_size: Tuple[int, int],
              rng: random.Random) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """mmpose TopDownHalfBodyTransform: the box of the upper or lower body's visible joints (upper ~69 % of the
    time; the other half if the chosen has < 3), widened to the crop's aspect, x1.5; None if too few joints."""
    vis = keypoints[:, 2] > 0
    upper = [k for k in UPPER_BODY if vis[k]]
    lower = [k for k in range(len(keypoints)) if vis[k] and k not in UPPER_BODY]
    pick = upper if (rng.gauss(0, 1) < 0.5 and len(upper) > 2) else lower  # mmpose: randn() < 0.5
    pick = pick if len(pick) > 2 else upper
    if len(pick) < 2:
        return None
    pts = keypoints[pick, :2]
    center = pts.mean(0)
    w, h = pts.max(0) - pts.min(0)
    aspect = image_size[0] / image_size[1]
    w, h = (w, w / aspect) if w > aspect * h else (h * aspect, h)
    return center.astype(np.float32), np.array([w, h], np.float32) / PIXEL_STD * 1.5


class PoseTrainSet(torch.utils.data.Dataset):
    """(normalised crop (3, H, W), (heatmaps (17, H/4, W/4), joint weights (17,))) per annotated person."""

    def __init__(self, instances: List[Instance], cfg: Dict[str, Any], image_size: Tuple[int, int]):
        self.instances, self.cfg, self.image_size = instances, cfg, image_size
        self.heatmap_size = (image_size[0] // 4, image_size[1] // 4)

    def __len__(self):
        return len(self.instances)

    def __getitem__(self, i):
        rng = random.Random(int(torch.randint(0, 2**31 - 1, (1,))))  # from torch's (per-worker, seeded) stream
        inst, cfg = self.instances[i], self.cfg
        img = np.array(open_image(inst.image))
        kp = inst.keypoints.astype(np.float64).copy()
        center, scale = inst.center.copy(), inst.scale.copy()
        if rng.random() < float(cfg["flip_prob"]):  # TopDownRandomFlip: mirror the image, swap left / right
            img = img[:, ::-1]
            w = img.shape[1]
            kp[:, 0] = np.where(kp[:, 2] > 0, w - 1 - kp[:, 0], kp[:, 0])
            for a, b in FLIP_PAIRS:
                kp[[a, b]] = kp[[b, a]]
            center[0] = w - 1 - center[0]
        if (kp[:, 2] > 0).sum() > 8 and rng.random() < float(cfg["half_body_prob"]):
            hb = half_body(kp, self.image_size, rng)
            if hb is not None:
                center, scale = hb
        sf, rf = float(cfg["scale_factor"]), float(cfg["rot_factor"])
        scale = scale * np.clip(rng.gauss(0, 1) * sf + 1, 1 - sf, 1 + sf)
        rotation = np.clip(rng.gauss(0, 1) * rf, -2 * rf, 2 * rf) if rng.random() <= float(cfg["rot_prob"]) else 0.0
        matrix = affine_matrix(center, scale, rotation, self.image_size)
        crop = warp_crop(img, matrix, self.image_size)
        joints = crop_keypoints(kp, matrix)
        target, weight = gaussian_target(joints, kp[:, 2], self.image_size, self.heatmap_size,
                                         float(cfg["heatmap_sigma"]))
        return normalize_crop(crop), (torch.from_numpy(target), torch.from_numpy(weight))


class PoseTestSet(torch.utils.data.Dataset):
    """(normalised crop, meta: image id, centre, scale, box score, flip test) per person box."""

    def __init__(self, instances: List[Instance], image_size: Tuple[int, int], flip: bool, ann: Path):
        self.instances, self.image_size, self.flip, self.ann_file = instances, image_size, flip, ann

    def __len__(self):
        return len(self.instances)

    def __getitem__(self, i):
        inst = self.instances[i]
        crop = warp_crop(np.array(open_image(inst.image)), affine_matrix(inst.center, inst.scale, 0.0,
                                                                         self.image_size), self.image_size)
        return normalize_crop(crop), {"image_id": inst.image_id, "center": inst.center, "scale": inst.scale,
                                      "score": inst.score, "flip": self.flip}


# --- the adapter -------------------------------------------------------------------------------------------------
def crop_size(cfg: Dict[str, Any], model_name: str) -> Tuple[int, int]:
    """(width, height) of the crops: the recipe's ``image_size`` [w, h], else the model's config name."""
    if cfg.get("image_size"):
        return int(cfg["image_size"][0]), int(cfg["image_size"][1])
    return pose_input_size(model_name)


class CocoPoseData(DenseData):
    """COCO keypoints; ``data.coco_pose.<profile>`` keys: ``root``, ``source``, ``synth``."""

    writer = staticmethod(write_synthetic_coco_pose)

    def classes(self) -> List[str]:
        return list(KEYPOINTS)  # the heatmap channels

    def class_index_desc(self) -> str:
        return "COCO keypoint order (17 joints)"

    def eval_classes(self, trained, checkpoint, num_classes):
        return list(KEYPOINTS)

    def _instances(self, split: str, image_size, det_file: Optional[str] = None) -> List[Instance]:
        if not ann_file(self.root, split).is_file():
            raise ConfigError(f"{ann_file(self.root, split)}: missing; check the root (`uniformer data check "
                              "coco_pose --root ...`)")
        if det_file is not None and not (self.root / det_file).is_file():
            raise ConfigError(f"{self.root / det_file}: no person-box results file; set eval.coco_pose.<profile>."
                              "det_file to yours, or null for the ground-truth boxes")
        return load_instances(self.root, split, image_size, det_file)

    def train_set(self, cfg, model, classes):
        size = crop_size(cfg, cfg["model"])
        return PoseTrainSet(self._instances("train", size), cfg, size)

    def val_set(self, cfg, model, classes):
        size = crop_size(cfg, cfg["model"])  # ground-truth boxes: the model's keypoints, not the detector's
        return PoseTestSet(self._instances("val", size), size, bool(cfg["flip_test"]), ann_file(self.root, "val"))

    def train_protocol(self, cfg, model, train_set) -> Dict[str, Any]:
        return {"image_size": list(train_set.image_size), "heatmap_size": list(train_set.heatmap_size)}

    def test_set(self, eval_cfg, model, classes, train_cfg):
        size = crop_size({"image_size": eval_cfg.get("image_size") or train_cfg.get("image_size")},
                         train_cfg.get("model") or eval_cfg.get("model") or "")
        det = eval_cfg.get("det_file")
        ds = PoseTestSet(self._instances("val", size, det), size, bool(eval_cfg["flip_test"]),
                         ann_file(self.root, "val"))
        boxes = "ground truth"
        if det:  # the keypoint AP depends on the detector: its file and person AP go into the table
            boxes = f"{Path(det).name} (person AP {100 * person_box_ap(ds.ann_file, self.root / det):.1f})"
        return ds, {"image_size": list(size), "flip_test": ds.flip, "boxes": boxes, "views": 2 if ds.flip else 1}

    def manifest(self) -> str:
        return dataset_manifest_hash(self.root)


# --- the task ------------------------------------------------------------------------------------------------------
class KeypointMeter:
    """Decoded people per image (gathered over processes: ``state`` / ``merge``); ``summary`` rescores, runs
    OKS-NMS per image and scores COCO keypoint AP / AR (in %) against the annotation file."""

    def __init__(self, ann: Path, oks_thr: float = 0.9):
        self.ann_file, self.oks_thr = ann, oks_thr
        self.people: Dict[int, List[Tuple[List[float], float, float]]] = defaultdict(list)
        self.n = 0

    def update(self, heatmaps: torch.Tensor, metas: List[Dict[str, Any]]) -> None:
        centers = np.stack([m["center"] for m in metas])
        scales = np.stack([m["scale"] for m in metas])
        kp, scores = decode(heatmaps.float().cpu().numpy(), centers, scales)
        for m, k, s, scale in zip(metas, kp, scores, scales):
            self.people[int(m["image_id"])].append((np.concatenate([k, s], -1).ravel().tolist(),
                                                    rescore(float(m["score"]), s[:, 0]),
                                                    float(np.prod(scale * PIXEL_STD))))
            self.n += 1

    def state(self):
        return {"people": dict(self.people), "n": self.n}

    def merge(self, states) -> "KeypointMeter":
        self.people, self.n = defaultdict(list), 0
        for st in states:
            for image_id, found in st["people"].items():
                self.people[image_id].extend(found)
            self.n += st["n"]
        return self

    def results(self) -> List[Dict[str, Any]]:
        out = []
        for image_id, found in sorted(self.people.items()):
            kps = np.array([f[0] for f in found]).reshape(len(found), -1, 3)
            for i in oks_nms(kps, np.array([f[1] for f in found]), np.array([f[2] for f in found]), self.oks_thr):
                out.append({"image_id": image_id, "category_id": 1, "keypoints": found[i][0], "score": found[i][1]})
        return out

    def summary(self) -> Dict[str, float]:
        results = self.results()
        stats = keypoint_ap(self.ann_file, results) if results else dict.fromkeys(STATS, 0.0)
        return {**{k: 100.0 * max(v, 0.0) for k, v in stats.items()}, "samples": self.n}  # -1 (no GT) -> 0


class TopDownPose(DenseTableMixin, Task):
    name = "top_down_pose"
    recipe_keys = ("image_size", "heatmap_sigma", "flip_prob", "half_body_prob", "scale_factor", "rot_factor",
                   "rot_prob", "flip_test", "backbone_init", "no_decay_keys", "decay_milestones", "decay_rate")
    metrics = ("AP", "AP50", "AP75", "AP_M", "AP_L", "AR")

    def check_recipe(self, cfg, where):
        size = cfg.get("image_size")
        if size and any(int(v) % 32 for v in size):
            raise ConfigError(f"params.yaml: {where}.image_size {size}: use multiples of 32 (the backbone's stride; "
                              "the heatmaps are the crop / 4)")

    def build_model(self, cfg, num_classes):
        model = build_pose_model(cfg["model"], drop_path_rate=float(cfg["drop_path"]),
                                 **(cfg.get("model_kwargs") or {}))
        init_backbone(model.backbone, cfg.get("backbone_init"))
        return model

    def create_model(self, name, num_classes, model_kwargs):
        return build_pose_model(name, **model_kwargs)

    def build_loss(self, cfg, num_classes):
        return joints_mse_loss  # MSE of the heatmaps, joints weighted by their visibility

    def num_outputs(self, state_dict, checkpoint):
        if "keypoint_head.final_layer.weight" not in state_dict:
            raise ConfigError(f"{checkpoint}: no keypoint_head.final_layer.weight; not a pose checkpoint (an "
                              "official one: `uniformer checkpoint convert` it first)")
        return int(state_dict["keypoint_head.final_layer.weight"].shape[0])

    def meter(self, num_classes, dataset=None):
        return KeypointMeter(dataset.ann_file)

    def chance_level(self, num_classes):
        return 0.0  # no information: no keypoint near its person, AP 0

    def collate(self, samples, targets):
        crops = torch.stack(list(samples))
        if isinstance(targets[0], dict):  # test: per-box metadata; the flip test rides with the crops
            return {"crops": crops, "flip": bool(targets[0]["flip"])}, list(targets)
        return crops, (torch.stack([t[0] for t in targets]), torch.stack([t[1] for t in targets]))

    def to_device(self, inputs, targets, device, channels_last):
        if isinstance(inputs, dict):
            crops, _ = super().to_device(inputs["crops"], None, device, channels_last)
            return {**inputs, "crops": crops}, targets
        return super().to_device(inputs, targets, device, channels_last)

    def train_loss(self, net, inputs, targets, loss_fn, mixup_fn):
        heatmaps, weights = targets
        return loss_fn(net(inputs), heatmaps, weights), int(inputs.shape[0])

    def predict(self, model, inputs):
        return flip_test(model, inputs["crops"]) if inputs["flip"] else model(inputs["crops"])


    # --- paper table (reports/coco_pose.md) and profile: the whole top-down model on one person crop ---
    # paper_results.csv names the README's APm / APl columns ar_m / ar_l
    extra_metrics = (("ap50", "AP50", "AP50"), ("ap75", "AP75", "AP75"), ("ar_m", "AP_M", "APm"),
                     ("ar_l", "AP_L", "APl"), ("ar", "AR", "AR"))
    params_published = False  # the pose README gives no parameter counts
    output_noun = "keypoints"
    plot_xlabel = "GFLOPs of the whole top-down model per person crop (multiply-adds, log scale)"
    profile_unit, profile_rate, profile_noun = "crop", "crops/s", "person crop"
    profile_section = "pose"  # profile.<settings>.pose
    report_legend = (
        "AP / AR: COCO keypoint AP (pycocotools, OKS) in %, flip test with the one-column shift, rescoring and "
        "OKS-NMS as published; person boxes as the `Person boxes` column says (the paper: a detector's results "
        "file with person AP 56.4 on val2017; smoke: the ground-truth boxes). GFLOPs: fvcore, backbone + "
        "TopDownSimpleHead on one crop of the input size (attention matmuls counted).")
    errata = {"top_down_384x288_global_base": "Published 14.8 GFLOPs for UniFormer-B at 384x288, the same figure "
                                              "as UniFormer-S at 448x320; the official code, counted the same way, "
                                              "gives 22.1 GFLOPs."}

    def report_fields(self, table, entry, prof, ev, comparable):
        return {**self.metric_fields(entry, ev, comparable), "person_boxes": ev.get("boxes") if ev else None}

    def report_columns(self, table):
        return ([Column("Model", "model", align="l"), Column("Input", "resolution"),
                 Column("Params (M)", "params_m", compare="pct"), Column("GFLOPs", "gflops", compare="pct")]
                + accuracy_columns(table.accuracy, table.accuracy_label) + self.metric_columns()
                + speed_columns("crops/s") + [Column("Person boxes", "person_boxes", align="l"),
                                              Column("Accuracy data", "data_source", align="l"),
                                              Column("Verdict", "verdict", align="l")])

    def profile_model(self, entry):
        return build_pose_model(entry.name)


TASK = register_task(TopDownPose())
register_dataset(DatasetSpec(
    "coco_pose", TASK, "coco_pose", "COCO keypoints", CocoPoseData, short="COCO",
    entries=lambda: dense_entries("coco_pose"),
    check=check_action("coco_pose", check_coco_pose), synth=synth_action("coco_pose", write_synthetic_coco_pose),
    real_sources=("coco-val2017-keypoints",)))
register_table(TableSpec("coco_pose", "COCO pose estimation (val2017, top-down)", TASK, ("coco_pose",),
                         short_title="COCO pose", accuracy="ap", accuracy_label="AP (%)", metric="AP"))
