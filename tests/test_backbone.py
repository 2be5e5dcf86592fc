"""The one UniFormer backbone: official builds of every manifest, dense backbones, light video goldens, features.

- ``build_official(stem)``: exactly the keys and shapes of every state-dict manifest (image, tl_, video_,
  det_, seg_, pose_), so each official checkpoint kind loads with ``strict=True``;
- dense backbones (global / window-w / hybrid-w stage 3, light XXS / XS): the official outputs for rule-defined
  weights (tests/data/golden/dense), and ImageNet weights load into them as the official code does;
- light video models: the official logits (tests/data/golden/uniformer_{xxs,xs,xxs_ls}_video);
- ``features_only`` / ``forward_intermediates`` for every registered variant, video included.
"""
import pytest
import timm
import torch
from conftest import DATA, assert_matches_manifest, load_manifest
from golden_rule import apply_rule, golden_input
from safetensors.torch import load_file

from uniformer.models import (IMAGE_MODELS, VIDEO_MODELS, CheckpointError, GlobalBlock, build_dense, build_official,
                              load_into_dense_backbone, set_fused_attn)
from uniformer.profiling.flops import count_flops
from uniformer.profiling.optimize import fold_batchnorm

TINY = dict(depth=(1, 1, 2, 1))  # structure, not size, is under test


pytestmark = pytest.mark.usefixtures("one_thread")


def all_manifests():
    return sorted(p.stem for p in (DATA / "manifests").glob("*.json"))


@pytest.mark.parametrize("stem", all_manifests())
def test_build_official_matches_manifest(stem):
    ref = load_manifest(stem)
    model = build_official(stem)
    assert_matches_manifest(model, ref)


def test_every_kind_of_manifest_is_covered():
    kinds = {s.split("_")[0] for s in all_manifests()}
    assert kinds == {"uniformer", "tl", "video", "det", "seg", "pose"}


# --- dense backbones --------------------------------------------------------------------------------------
def dense_goldens():
    return sorted(p.stem for p in (DATA / "golden" / "dense").glob("*.safetensors"))


def test_dense_goldens_present():
    assert len(dense_goldens()) == 10


@pytest.mark.parametrize("stem", dense_goldens())
def test_dense_backbone_golden_outputs(stem):
    ref = load_file(DATA / "golden" / "dense" / f"{stem}.safetensors")
    model = apply_rule(build_official(stem))
    x = golden_input(tuple(ref["input_shape"].tolist()))
    with torch.no_grad():
        outs = model(x)
    expected = [ref[f"out{i}"] for i in range(len(ref) - 1)]
    assert len(outs) == len(expected) == (1 if stem.startswith("pose_") else 4)
    for i, (out, exp) in enumerate(zip(outs, expected)):
        assert out.shape == exp.shape, (i, out.shape, exp.shape)
        torch.testing.assert_close(out, exp, atol=1e-4, rtol=0, msg=f"{stem} out{i}")


@pytest.mark.parametrize("stem", [s for s in all_manifests() if s.startswith(("det_", "seg_", "pose_"))
                                  and "_base_" not in s])  # B: same code, 4x the CPU time
def test_dense_flops_match_official_measurement(stem):
    """fvcore counts of the official dense backbones (padded window tokens included) at the first manifest size."""
    ref = load_manifest(stem)["flops"][0]
    ours = count_flops(build_official(stem).eval(), tuple(ref["input_shape"][1:]))["gflops"]
    assert round(ours * 1e9) == round(ref["fvcore_gflops"] * 1e9), (ours, ref["fvcore_gflops"])  # exact counts


def test_stage3_token_mixers():
    """Hybrid: block i of stage 3 is global when (i + 1) % 4 == 0, windowed otherwise; stage 4 always global."""
    hybrid = build_official("det_uniformer_base_h14")
    assert [i for i, b in enumerate(hybrid.blocks3) if b.window_size == 0] == [3, 7, 11, 15, 19]
    assert {b.window_size for b in hybrid.blocks3} == {0, 14}
    assert all(b.window_size == 32 for b in build_official("seg_uniformer_small_w32").blocks3)
    assert all(b.window_size == 0 for m in ("seg_uniformer_small_global", "seg_uniformer_small_h32")
               for b in build_official(m).blocks4)


def test_window_covering_the_whole_map_is_global_attention():
    """Without padding a single window is global attention; with padding the zero tokens change the result."""
    torch.manual_seed(0)
    glob = GlobalBlock(64, 2).eval()
    win = GlobalBlock(64, 2, window_size=8).eval()
    win.load_state_dict(glob.state_dict())
    with torch.no_grad():
        x = torch.randn(1, 64, 8, 16)  # two 8x8 windows side by side
        torch.testing.assert_close(win(x[..., :8]), glob(x[..., :8]), atol=1e-5, rtol=0)
        assert (win(x) - glob(x)).abs().max() > 1e-3
        padded = torch.randn(1, 64, 7, 7)  # one window, one padded row and column
        assert (win(padded) - glob(padded)).abs().max() > 1e-3


@pytest.mark.parametrize("image,dense_size", [("uniformer_small", "small"), ("uniformer_xxs", "xxs")])
def test_imagenet_checkpoint_into_dense_backbone(tmp_path, image, dense_size):
    """As the official mmcv loader: classifier norm / heads ignored, norm1..norm4 fresh, the trunk loaded."""
    depth = dict(depth=(1, 1, 2, 2))
    cls = apply_rule(timm.create_model(image, **depth))
    torch.save({"model": cls.state_dict(), "epoch": 299}, tmp_path / "in1k.pth")
    dense = build_dense(dense_size, "hybrid", **depth)
    fresh_norm1 = dense.norm1.weight.clone()
    ignored, fresh = load_into_dense_backbone(dense, tmp_path / "in1k.pth")
    heads = {"norm", "head"} | ({"norm_cls", "head_cls"} if dense_size == "xxs" else set())
    assert {k.split(".")[0] for k in ignored} == heads
    assert fresh == sorted(f"norm{i}.{p}" for i in range(1, 5) for p in ("bias", "weight"))
    own = dense.state_dict()
    for k, v in cls.state_dict().items():
        if k in own:
            assert torch.equal(own[k], v), k
    assert torch.equal(dense.norm1.weight, fresh_norm1)
    # another trunk does not fit: named, not silently skipped
    other = timm.create_model("uniformer_small_plus", **depth).state_dict()
    with pytest.raises(CheckpointError, match="patch_embed"):
        load_into_dense_backbone(build_dense("small", **depth), other)


# --- light video goldens ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,stem", [
    ("uniformer_xxs_video", "video_uniformer_xxs_fp32"),
    ("uniformer_xs_video", "video_uniformer_xs_fp32"),
    ("uniformer_xxs_ls_video", "video_uniformer_xxs_ls_fp32"),
])
def test_light_video_golden_logits(name, stem):
    ref = load_file(DATA / "golden" / f"{name}.safetensors")["logits"]
    model = apply_rule(build_official(stem))
    assert type(model).__name__ == "UniFormer" and model.pretrained_cfg["architecture"] == name
    x = golden_input((2, 3, 8, 112, 112))
    for fused in (True, False):
        set_fused_attn(model, fused)
        with torch.no_grad():
            out = model(x)
        assert out.shape == ref.shape == (2, 400)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0, msg=f"{name} fused={fused}")


# --- features -----------------------------------------------------------------------------------------------
def _input(name):
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, 4, 64, 64, generator=g) if name.endswith("_video") else torch.randn(1, 3, 64, 64,
                                                                                              generator=g)


@pytest.mark.parametrize("name", IMAGE_MODELS + VIDEO_MODELS)
def test_features_only_and_intermediates(name):
    model = timm.create_model(name, **TINY).eval()
    x = _input(name)
    spatial = (2,) if name.endswith("_video") else ()  # T/2 after the stem
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        feats = model.forward_features(x)
        feats = feats[0] if isinstance(feats, tuple) else feats  # light: (map, class token)
        torch.testing.assert_close(final, feats)
        torch.testing.assert_close(inter[-1], model.forward_intermediates(x, indices=[3], intermediates_only=True)[0])
        net = timm.create_model(name, features_only=True, out_indices=(1, 3), **TINY).eval()
        net.model.load_state_dict(model.state_dict(), strict=False)  # the getter prunes norm and heads
        out = net(x)
    dims = model.embed_dim
    assert [tuple(f.shape) for f in inter] == [(1, dims[i], *spatial, 64 // r, 64 // r)
                                               for i, r in enumerate((4, 8, 16, 32))]
    assert net.feature_info.channels() == [dims[1], dims[3]] and net.feature_info.reduction() == [8, 32]
    assert len(out) == 2
    for a, b in zip(out, (inter[1], inter[3])):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["uniformer_small_video", "uniformer_xxs_ls_video"])
def test_fold_batchnorm_video(name):
    """The one LocalBlock folds in 3D too (BN3d -> 1x1x1 convs, conv stem, final BN3d into the head)."""
    model = apply_rule(timm.create_model(name, **TINY))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    x = _input(name)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=0)
