"""Segmentors and pose models hold exactly the official checkpoints' keys and shapes (tests/data/full_manifests)."""
import json

import pytest
import torch
from conftest import DATA

from uniformer.models.pose import POSE_CONFIGS, build_pose_model, convert_pose_checkpoint
from uniformer.models.segmentation import SEG_CONFIGS, build_segmentor, convert_segmentation_checkpoint

FULL = DATA / "full_manifests"


def manifest(name: str) -> dict:
    return json.loads((FULL / f"{name}.json").read_text())


def build(name: str, device: str = "cpu"):
    """``meta``: shapes without memory or init time (the B models too)."""
    with torch.device(device):
        return build_segmentor(name) if name.startswith(("upernet", "fpn")) else build_pose_model(name)


def convert(sd, name):
    seg = name.startswith(("upernet", "fpn"))
    return (convert_segmentation_checkpoint if seg else convert_pose_checkpoint)(sd, name)


def test_every_manifest_has_a_builder():
    files = sorted(p.stem for p in FULL.glob("*.json") if p.stem.startswith(("upernet_", "fpn_", "top_down_")))
    assert len(files) == 28 and files == sorted(SEG_CONFIGS + POSE_CONFIGS)


@pytest.mark.parametrize("name", SEG_CONFIGS + POSE_CONFIGS)
def test_keys_and_shapes_equal_manifest_and_random_checkpoint_loads_strictly(name):
    man = manifest(name)
    model = build(name, "meta")
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == man["keys"]
    assert len(ours) == man["num_state_dict_entries"]
    # head modules in the official order (the order mmcv writes them)
    heads = [k for k in man["keys"] if not k.startswith("backbone.")]
    assert [k for k in ours if not k.startswith("backbone.")] == heads
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == man["num_params"]
    ckpt = {"state_dict": {"module." + k: torch.empty(s, device="meta") for k, s in man["keys"].items()}}
    model.load_state_dict(convert(ckpt, name), strict=True)


@pytest.mark.parametrize("name, size, out", [("fpn_xxs", (64, 96), (150, 64, 96)),
                                             ("upernet_global_small__test_config_h32", (64, 64), (150, 64, 64)),
                                             ("top_down_256x192_global_small", (64, 64), (17, 16, 16))])
def test_real_random_checkpoint_loads_and_runs(name, size, out):
    model = build(name).eval()
    torch.manual_seed(0)
    sd = {k: 0.02 * torch.randn(s) if s else torch.tensor(1) for k, s in manifest(name)["keys"].items()}
    sd = {k: v.abs() + 1 if k.endswith("running_var") else v for k, v in sd.items()}  # a valid variance
    model.load_state_dict(convert(sd, name), strict=True)
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        y = model(torch.randn(1, 3, *size))
    assert y.shape == (1, *out) and torch.isfinite(y).all()


def test_pose_converter_renames_mmpose1_head():
    sd = convert_pose_checkpoint({"head.final_layer.bias": 1, "backbone.norm4.weight": 2},
                                 "top_down_256x192_global_small")
    assert sd == {"keypoint_head.final_layer.bias": 1, "backbone.norm4.weight": 2}
    with pytest.raises(KeyError):
        convert_segmentation_checkpoint({}, "upernet_tiny")
