"""Pretrained configs (timm ``default_cfgs``) generated from the published model zoo.

The published numbers (top-1, params, GFLOPs, checkpoint file names) are read from the package's
copy of ``paper_results.csv``; nothing is hand-copied into code. The configs carry no URL and no
``file``: nothing is ever downloaded, and an official checkpoint is loaded from a path the user
gives (``uniformer.load_checkpoint`` / ``--checkpoint``).
"""
from dataclasses import dataclass
from typing import Dict, Optional

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD
from timm.models import generate_default_cfgs
from timm.models._pretrained import PretrainedCfg

from ..reference import imagenet_rows

LIGHT_MODELS = ("uniformer_xxs", "uniformer_xs")
# Evaluation crop and normalisation: the DeiT-based trainers (plain and light) resize to 256/224 of the crop with the
# ImageNet mean/std. The token-labelling model file sets ``model.default_cfg = _cfg()`` from timm 0.4.12's
# vision_transformer (the version its requirements pin), whose mean = std = (0.5, 0.5, 0.5) and crop_pct 0.9, and
# its main.py / validate.py take both from the model's cfg (test.sh passes only --img-size). All bicubic.
CROP_PCT_DEIT = 0.875
CROP_PCT_TL = 0.9


@dataclass
class UniFormerPretrainedCfg(PretrainedCfg):
    """timm's pretrained cfg plus the published metadata of the checkpoint (shows in ``model.pretrained_cfg``)."""
    paper_top1: Optional[float] = None
    paper_params_m: Optional[float] = None
    paper_gflops: Optional[float] = None
    checkpoint_file: Optional[str] = None
    checkpoint_url: Optional[str] = None  # where the authors publish it; never fetched by this package


def registered_name(row: Dict[str, str]) -> str:
    """Our timm name of a paper_results.csv row: the official constructor, ``_tl`` for token labelling."""
    return row["model"] + ("_tl" if row["token_labeling"] == "yes" else "")


def pretrained_tag(row: Dict[str, str]) -> str:
    """``in1k`` for 224 models, ``in1k_<res>`` for the 384 fine-tunes and each light model's resolution."""
    res = int(row["resolution"].split("x")[0])
    if row["model"] in LIGHT_MODELS or res != 224:
        return f"in1k_{res}"
    return "in1k"


def _cfg(row: Dict[str, str]) -> UniFormerPretrainedCfg:
    res = int(row["resolution"].split("x")[0])
    tl = row["token_labeling"] == "yes"
    return UniFormerPretrainedCfg(
        url="",
        num_classes=1000,
        input_size=(3, res, res),
        pool_size=(res // 32, res // 32),
        crop_pct=CROP_PCT_TL if tl else CROP_PCT_DEIT,
        interpolation="bicubic",
        mean=IMAGENET_INCEPTION_MEAN if tl else IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_INCEPTION_STD if tl else IMAGENET_DEFAULT_STD,
        first_conv="patch_embed1.proj" if row["model"] not in LIGHT_MODELS and "plus" not in row["model"]
        else "patch_embed1.proj.0",
        classifier="head",
        license="mit",
        paper_ids="arXiv:2201.09450",
        paper_name=row["model_label"] + (" + token labeling" if tl else ""),
        # published metadata (not used to load anything)
        paper_top1=float(row["top1"]) if row["top1"] else None,
        paper_params_m=float(row["params_m"]) if row["params_m"] else None,
        paper_gflops=float(row["gflops"]) if row["gflops"] else None,
        checkpoint_file=row["checkpoint_file"] or None,
        checkpoint_url=row["checkpoint_url"] or None,
    )


def generate_default_cfgs_from_paper(model_names) -> dict:
    """default_cfgs for the given registered names; the first tag per model is its default (224 if published)."""
    cfgs = {}
    rows = [r for r in imagenet_rows() if registered_name(r) in model_names]
    # 224 first so that the untagged name resolves to the 224 weights
    rows.sort(key=lambda r: (registered_name(r), pretrained_tag(r) not in ("in1k", "in1k_224"), r["resolution"]))
    for row in rows:
        cfgs[f"{registered_name(row)}.{pretrained_tag(row)}"] = _cfg(row)
    missing = set(model_names) - {k.split(".")[0] for k in cfgs}
    assert not missing, f"no published ImageNet row for {sorted(missing)}"
    return generate_default_cfgs(cfgs)


def refuse_download(variant: str, pretrained: bool, kwargs: dict) -> None:
    """``pretrained=True`` would make timm look for a URL; we ship none. Point at the local-file route instead."""
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    if pretrained and not (overlay.get("file") or overlay.get("state_dict")):
        raise ValueError(
            f"{variant}: no weights are downloaded by uniformer-bench. Download the official checkpoint yourself and "
            f"load it with uniformer.load_checkpoint(model, path) (or --checkpoint PATH), or pass "
            f"pretrained_cfg_overlay=dict(file=path).")
