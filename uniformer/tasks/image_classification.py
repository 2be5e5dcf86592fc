"""Image classification: ImageNet-1K (the paper's Table 1 and its light / 384 / token-labelling rows).

Data set ``imagenet``: ImageNet-style folders ``ROOT/{train,val}/<wnid>/*`` (``data.imagenet``), its synthetic
twin (``data.synth_imagenet``) and checker (``data.check``); table ``imagenet``.
"""
import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import timm
from timm.data import resolve_data_config

from ..config import ConfigError
from ..data.check import check_imagenet
from ..data.imagenet import ImageNetFolder, dataset_manifest_hash
from ..data.synth_imagenet import write_synthetic_imagenet
from ..data.token_labels import MAP_GEOMETRIES, TokenLabelFolder, build_token_label_transform, write_synthetic_maps
from ..data.transforms import build_eval_transform, build_train_transform, eval_data_config, train_img_size
from ..models.catalog import imagenet_entries
from .base import Column, DataAction, DatasetSpec, TableSpec, register_dataset, register_table, register_task
from .base import accuracy_columns, speed_columns
from .classification import ClassificationTask, is_token_label_model


class ImageData:
    """ImageNet-style folders: ``ROOT/{train,val}/<wnid>/*``; classes = sorted wnids of ``train``.

    ``data.<dataset>.<profile>`` keys: ``root``, ``source``, ``synth`` (the synthetic set the smoke profile
    writes when the root is empty)."""

    def __init__(self, dataset: str, root: os.PathLike, data_cfg: Dict[str, Any]):
        self.dataset, self.root, self.cfg = dataset, Path(root), data_cfg

    def ensure(self) -> None:
        """Smoke profile: write the synthetic set of ``data.<dataset>.<profile>.synth`` if the root has none."""
        if (self.root / "manifest.json").is_file() or (self.root / "train").is_dir() or not self.cfg.get("synth"):
            return
        s = self.cfg["synth"]
        print(f"{self.root}: no data set; writing the synthetic one ({s})", file=sys.stderr)
        write_synthetic_imagenet(self.root, int(s["classes"]), int(s["train_per_class"]), int(s["val_per_class"]),
                                 int(s["size"]), int(s["seed"]))

    def classes(self) -> List[str]:
        split = "train" if (self.root / "train").is_dir() else "val"
        return ImageNetFolder(self.root, split).classes

    def class_index_desc(self) -> str:
        return "sorted wnid folders of train/"

    def eval_classes(self, trained: Optional[List[str]], checkpoint: str, num_classes: int) -> List[str]:
        """Our checkpoint's classes (``trained``), else the folders' order (the published ImageNet order)."""
        return trained if trained is not None else self.classes()

    def train_set(self, cfg, model, classes):
        tl = cfg.get("token_label")
        if tl:  # samples come with their token-label map, cropped and flipped with the image
            self.ensure_token_labels(tl, len(classes))
            conf = resolve_data_config(model=model)
            return TokenLabelFolder(self.root, tl["root"], build_token_label_transform(
                cfg, train_img_size(cfg, model), conf["mean"], conf["std"]), class_index=classes)
        ds = ImageNetFolder(self.root, "train", class_index=classes)
        ds.transform = build_train_transform(cfg, model)
        return ds

    def ensure_token_labels(self, tl: Dict[str, Any], num_classes: int) -> None:
        """Smoke: write maps of ``token_label.synth`` for the synthetic set where they are missing."""
        s = tl.get("synth")
        if s:
            n = write_synthetic_maps(self.root, tl["root"], num_classes, int(s.get("size", 14)),
                                     int(s.get("topk", 5)), int(s.get("seed", 0)))
            if n:
                print(f"{tl['root']}: wrote {n} synthetic token-label maps", file=sys.stderr)

    def val_set(self, cfg, model, classes):
        ds = ImageNetFolder(self.root, "val", class_index=classes)
        ds.transform = build_eval_transform(model, img_size=train_img_size(cfg, model))
        return ds

    def train_protocol(self, cfg, model, train_set) -> Dict[str, Any]:
        """What config.yaml / metrics.json record of the training input beyond the recipe."""
        return {"img_size": train_img_size(cfg, model), **token_labels_field(cfg)}

    def test_set(self, eval_cfg, model, classes, train_cfg):
        """(val set with the published eval transform, its protocol) at ``img_size`` (eval, else training)."""
        img_size = eval_cfg.get("img_size") or train_cfg.get("img_size") or None
        ds = ImageNetFolder(self.root, "val", class_index=classes)
        ds.transform = build_eval_transform(model, img_size, eval_cfg.get("crop_pct"))
        conf = eval_data_config(model, img_size, eval_cfg.get("crop_pct"))
        return ds, {"img_size": int(conf["input_size"][-1]), "crop_pct": conf["crop_pct"],
                    "interpolation": conf["interpolation"], **token_labels_field(train_cfg)}

    def manifest(self) -> str:
        return dataset_manifest_hash(self.root)


TOKEN_LABEL_KEYS = ("root", "dense_weight", "synth", "randaug_geometry")


def token_labels_field(train_cfg: Dict[str, Any]) -> Dict[str, str]:
    """How a token-labelling model of ours was trained (metrics.json and the table's model column); {} otherwise."""
    if not train_cfg.get("model") or not is_token_label_model(train_cfg["model"]):
        return {}
    tl = train_cfg.get("token_label")
    return {"token_labels": "maps" if tl else "none, aux head dropped"}


class ImageClassification(ClassificationTask):
    name = "image_classification"
    recipe_keys = ("img_size", "aa", "color_jitter", "train_interpolation", "scale", "ratio", "hflip", "reprob",
                   "remode", "recount", "repeated_aug", "token_label")

    def check_recipe(self, cfg, where):
        tl = cfg.get("token_label")
        if not tl:
            return
        if not isinstance(tl, dict) or not tl.get("root") or set(tl) - set(TOKEN_LABEL_KEYS):
            raise ConfigError(f"{where}.token_label={tl!r}: a mapping with root (the maps' folder) and optionally "
                              f"{', '.join(TOKEN_LABEL_KEYS[1:])}; or null")
        if not is_token_label_model(cfg["model"]):
            raise ConfigError(f"{where}: token_label needs a token-labelling model (*_tl), not {cfg['model']}")
        if float(cfg["mixup"]) > 0 or float(cfg["cutmix"]) > 0 or cfg["cutmix_minmax"] is not None:
            raise ConfigError(f"{where}: token_label with Mixup/CutMix is not supported (the official TL recipes "
                              "use MixToken only); set mixup=0 cutmix=0")
        if cfg["aa"] and not str(cfg["aa"]).startswith("rand"):  # official: label-aware RandAugment only
            raise ConfigError(f"{where}: aa={cfg['aa']!r} with token_label: only RandAugment ('rand-...', e.g. the "
                              "official rand-m9-mstd0.5-inc1) moves the label maps with the image; set a rand-... "
                              "policy or aa=null")
        if (tl.get("randaug_geometry") or "aligned") not in MAP_GEOMETRIES:
            raise ConfigError(f"{where}.token_label.randaug_geometry={tl['randaug_geometry']!r}: one of "
                              f"{', '.join(MAP_GEOMETRIES)} (how RandAugment's geometric ops move the maps)")
    report_legend = ("Params / GFLOPs: parameter count and fvcore multiply-adds (the paper's FLOPs) for one image "
                     "at the entry's resolution; img/s: fp32 inference throughput on this machine, and the achieved "
                     "2·FLOPs·img/s as a fraction of the fp32 GEMM rate measured in the same run.")
    profile_legend = (
        "Published params / GFLOPs are the entry's row of paper_results.csv; ours: parameter count and fvcore "
        "multiply-adds (the paper's \"FLOPs\") for one image at the entry's resolution. Δ = ours / published − 1.",
        "Verdict: `ok` when params and GFLOPs are within {tol}% of the published figures.",
    )

    def report_columns(self, table):
        return ([Column("Model", "model", align="l"), Column("Res.", "resolution"), Column("TL", "token_labeling"),
                 Column("Params (M)", "params_m", compare="pct"), Column("GFLOPs", "gflops", compare="pct")]
                + accuracy_columns(table.accuracy, table.accuracy_label) + speed_columns("img/s")
                + [Column("Accuracy data", "data_source", align="l"), Column("Verdict", "verdict", align="l")])

    def profile_inputs(self, entry):
        return (3, entry.img_size, entry.img_size)

    def profile_model(self, entry):
        return timm.create_model(entry.model, img_size=entry.img_size)  # img_size is metadata: one build per model

    def profile_fields(self, entry):
        return {"img_size": entry.img_size}


# --- `uniformer data synth|check imagenet` ---------------------------------------------------------------------
def _synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (a previous synthetic set there is replaced)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=40)
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)


def _synth(args) -> int:
    try:
        manifest = write_synthetic_imagenet(args.out, args.classes, args.train_per_class, args.val_per_class,
                                            args.size, args.seed)
    except (ValueError, FileExistsError) as e:  # bad arguments or a foreign folder: a message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(manifest['files'])} images, {args.classes} classes, sha256 {manifest['sha256']}")
    return 0


def root_and_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="data set root folder")
    p.add_argument("--workers", type=int, default=0, help="decode in this many processes")


TASK = register_task(ImageClassification())
register_dataset(DatasetSpec(
    "imagenet", TASK, "imagenet", "ImageNet", ImageData, entries=imagenet_entries,
    check=DataAction("imagenet", root_and_workers, lambda args: check_imagenet(args.root, workers=args.workers)),
    synth=DataAction("imagenet", _synth_arguments, _synth), real_sources=("imagenet-val", "imagenet")))
register_table(TableSpec("imagenet", "ImageNet-1K classification", TASK, ("imagenet",), short_title="ImageNet"))
