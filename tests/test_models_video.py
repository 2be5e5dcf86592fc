"""Fidelity of the video UniFormer family (S/B and the light XXS/XS) to the official SlowFast implementation.

- state dicts: exactly the official keys, shapes and parameter counts of every ``video_*`` manifest;
- function: the official logits for rule-defined weights (S and B, both attention paths), loaded from an
  official-format (``model_state``) file built from the manifest's key list;
- FLOPs: fvcore counts equal those measured on the official code (smallest input per model + one larger);
- 2D -> 3D inflation: shapes, heads, and what a temporally constant clip truly gives (see the tests' docstrings).

Inputs are kept small (2 shared CPU cores); only the golden and FLOP shapes are the reference ones.
"""
import functools

import pytest
import timm
import torch
from conftest import DATA, assert_matches_manifest, load_manifest
from golden_rule import apply_rule, golden_input, rule_tensor
from safetensors.torch import load_file
from timm.models import get_pretrained_cfg

import uniformer  # noqa: F401  (registers the models)
from uniformer import load_checkpoint
from uniformer.models import VIDEO_MODELS, inflate_state_dict, set_fused_attn, video_entries
from uniformer.models.video_catalog import VIDEO_TASKS
from uniformer.profiling.flops import count_flops


pytestmark = pytest.mark.usefixtures("one_thread")


def video_manifests():
    return sorted(p.stem for p in (DATA / "manifests").glob("video_*.json"))


def manifest_model(stem: str):
    """(registered name, kwargs) of a video manifest: ``video_uniformer_small_k400`` -> uniformer_small_video, 400."""
    name = stem[len("video_"):]
    for suffix, classes in (("_k400", 400), ("_sthv2", 174)):
        if name.endswith(suffix):
            return name[:-len(suffix)] + "_video", dict(num_classes=classes)
    light = {"uniformer_xxs_light": ("uniformer_xxs_video", False), "uniformer_xxs_fp32": ("uniformer_xxs_video", True),
             "uniformer_xs_fp32": ("uniformer_xs_video", True), "uniformer_xxs_ls_fp32": ("uniformer_xxs_ls_video", True)}
    model, fp32 = light[name]
    return model, dict(num_classes=400, attn_fp32=fp32)


@functools.lru_cache(maxsize=None)
def _build(name: str, kwargs: tuple) -> torch.nn.Module:
    return timm.create_model(name, **dict(kwargs)).eval()


def build(name: str, **kwargs) -> torch.nn.Module:
    """One model per (variant, kwargs) for the session; tests that need particular weights set them."""
    return _build(name, tuple(sorted(kwargs.items())))


def official_state_dict(manifest: str) -> dict:
    """A state dict built from the OFFICIAL key list alone, weights by the golden rule."""
    out = {}
    for k, shape in load_manifest(manifest)["keys"].items():
        like = torch.empty(shape, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
        out[k] = rule_tensor(k, like)
    return out


# --- state dicts ---------------------------------------------------------------------------------------
def test_every_video_model_has_a_manifest():
    assert {manifest_model(m)[0] for m in video_manifests()} == set(VIDEO_MODELS)
    assert len(video_manifests()) == 8


@pytest.mark.parametrize("manifest", video_manifests())
def test_state_dict_matches_official_manifest(manifest):
    ref = load_manifest(manifest)
    name, kwargs = manifest_model(manifest)
    model = build(name, **kwargs)
    assert_matches_manifest(model, ref)


# --- function: golden logits -------------------------------------------------------------------------
def test_golden_small_from_official_format_checkpoint(tmp_path):
    """A SlowFast-style file ({'model_state', 'optimizer_state', 'epoch', 'cfg'}) made from the official
    manifest's keys loads strictly and reproduces the official logits, on both attention paths."""
    sd = official_state_dict("video_uniformer_small_k400")
    path = tmp_path / "uniformer_small_k400_8x8.pth"
    torch.save({"epoch": 110, "model_state": sd, "optimizer_state": {}, "cfg": "MODEL:\n  NUM_CLASSES: 400\n"}, path)
    model = load_checkpoint(build("uniformer_small_video", num_classes=400), path)  # strict=True
    assert torch.equal(model.patch_embed1.proj.weight, sd["patch_embed1.proj.weight"])
    _check_golden(model, "uniformer_small_video")


def test_golden_base():
    _check_golden(apply_rule(build("uniformer_base_video", num_classes=400)), "uniformer_base_video")


def _check_golden(model, name):
    ref = load_file(DATA / "golden" / f"{name}.safetensors")["logits"]
    x = golden_input((2, 3, 8, 112, 112))
    for fused in (True, False):
        set_fused_attn(model, fused)
        with torch.no_grad():
            out = model([x] if fused else x)  # SlowFast's one-pathway list is accepted too
        assert out.shape == ref.shape == (2, 400)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0, msg=f"{name} fused={fused}")
    set_fused_attn(model, True)


# --- FLOPs ---------------------------------------------------------------------------------------------
def _flop_cases():
    """Per model: its smallest manifest input, plus one larger input (XXS-LS 8x128 vs 4x128: T scaling)."""
    smallest = {}
    for m in video_manifests():
        name, kwargs = manifest_model(m)
        for f in load_manifest(m)["flops"]:
            shape = tuple(f["input_shape"][1:])
            key = (shape[1] * shape[2] * shape[3], shape)
            if name not in smallest or key < smallest[name][0]:
                smallest[name] = (key, m, shape, f["fvcore_gflops"])
    cases = [(m, shape, g) for _, m, shape, g in smallest.values()]
    larger = [(m, tuple(f["input_shape"][1:]), f["fvcore_gflops"]) for m in ["video_uniformer_xxs_ls_fp32"]
              for f in load_manifest(m)["flops"] if f["input_shape"][2:] == [8, 128, 128]]
    assert len(larger) == 1
    return [pytest.param(m, s, g, id=f"{m}-{'x'.join(map(str, s[1:]))}") for m, s, g in sorted(cases) + larger]


@pytest.mark.parametrize("manifest,shape,official_gflops", _flop_cases())
def test_flops_match_official_measurement(manifest, shape, official_gflops):
    name, kwargs = manifest_model(manifest)
    ours = count_flops(build(name, **kwargs), shape)["gflops"]  # SDPA path with our fvcore handle
    assert round(ours * 1e9) == round(official_gflops * 1e9), (ours, official_gflops)  # fvcore counts: integers


# --- light models ----------------------------------------------------------------------------------------
def test_light_train_outputs_and_attn_fp32_option(monkeypatch):
    model = timm.create_model("uniformer_xxs_ls_video", num_classes=7, attn_fp32=True, depth=(1, 1, 2, 1))
    assert model.blocks1[0].gamma_1.shape == (1, 56, 1, 1, 1) and model.blocks3[0].gamma_1.shape == (224,)
    assert not any("gamma_3" in k for k in model.state_dict())
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    out = model.train()(x)
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 7), (2, 7)]
    model.eval()
    # attn_fp32: the attention math runs with autocast off (qkv/proj still under autocast)
    seen = []
    attn = model.blocks3[1].attn  # a pruned block
    orig = attn._attend
    monkeypatch.setattr(attn, "_attend", lambda q, k, v: (seen.append((torch.is_autocast_enabled("cpu"), q.dtype)),
                                                          orig(q, k, v))[1])
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            model.set_attn_fp32(False)
            model(x)
    assert seen == [(False, torch.float32), (False, torch.bfloat16), (True, torch.bfloat16)]
    assert torch.nn.functional.cosine_similarity(out.float(), ref).min().item() > 0.99


def test_pretrained_tags_and_entries():
    entries = {t: video_entries(t) for t in VIDEO_TASKS}
    assert [len(entries[t]) for t in VIDEO_TASKS] == [16, 5, 8, 8]
    names = [e.name for t in VIDEO_TASKS for e in entries[t]]
    assert len(set(names)) == len(names) and all(e.model in VIDEO_MODELS for e in video_entries())
    cfg = get_pretrained_cfg("uniformer_small_video.k400_16x4").to_dict()
    assert cfg["input_size"] == (3, 16, 224, 224) and cfg["num_classes"] == 400 and cfg["paper_top1"] == 80.8
    assert cfg["checkpoint_file"] == "uniformer_small_k400_16x4.pth" and cfg["paper_gflops"] == 41.75
    assert cfg["url"] == "" and not cfg.get("file")  # nothing is ever downloaded
    assert get_pretrained_cfg("uniformer_base_video.k600_16x4").num_classes == 600
    tiny = dict(depth=(1, 1, 1, 1))  # the tag, not the depth, is under test
    m = timm.create_model("uniformer_base_video.ssv2_32f_from_k600", **tiny)
    assert m.num_classes == 174 and m.pretrained_cfg["input_size"] == (3, 32, 224, 224)
    assert timm.create_model("uniformer_small_video", **tiny).pretrained_cfg["tag"] == "k400_8x8"
    assert timm.create_model("uniformer_small_video", num_classes=0, **tiny).forward_head(
        torch.zeros(1, 512, 1, 1, 1)).shape == (1, 512)
    light = timm.create_model("uniformer_xxs_ls_video.k400_4f_160", **tiny)
    assert light.pretrained_cfg["input_size"] == (3, 4, 160, 160) and light.blocks3[0].attn.attn_fp32
    assert not timm.create_model("uniformer_xxs_video.k400_32f_160", **tiny).blocks3[0].attn.attn_fp32
    with pytest.raises(ValueError, match="no weights are downloaded"):
        timm.create_model("uniformer_small_video", pretrained=True)


# --- 2D -> 3D inflation ------------------------------------------------------------------------------
def test_inflation_shapes_and_heads(tmp_path):
    depth = dict(depth=(1, 1, 2, 1))  # shapes and key handling only
    image = apply_rule(timm.create_model("uniformer_small", **depth))
    torch.save({"model": image.state_dict(), "epoch": 299}, tmp_path / "uniformer_small_in1k.pth")
    video = timm.create_model("uniformer_small_video", **depth)
    sd = inflate_state_dict(image.state_dict(), video)
    own = video.state_dict()
    assert set(own) - set(sd) == {"head.weight", "head.bias"}  # 1000 -> 400 classes: head dropped
    assert all(sd[k].shape == own[k].shape for k in sd)
    assert sd["patch_embed1.proj.weight"].shape == (64, 3, 3, 4, 4)
    torch.testing.assert_close(sd["patch_embed1.proj.weight"].sum(2), image.patch_embed1.proj.weight)
    torch.testing.assert_close(sd["blocks1.0.attn.weight"][:, :, 2], image.blocks1[0].attn.weight / 5)
    assert torch.equal(sd["blocks1.0.conv1.weight"][:, :, 0], image.blocks1[0].conv1.weight)
    centre = inflate_state_dict(image.state_dict(), video, center=True)["blocks1.0.pos_embed.weight"]
    assert torch.equal(centre[:, :, 1], image.blocks1[0].pos_embed.weight) and not centre[:, :, [0, 2]].any()
    load_checkpoint(video, tmp_path / "uniformer_small_in1k.pth", strict=False, filter_fn=inflate_state_dict)
    assert torch.equal(video.blocks3[0].attn.qkv.weight, image.blocks3[0].attn.qkv.weight)
    assert torch.equal(video.patch_embed1.proj.weight, sd["patch_embed1.proj.weight"])
    kept = inflate_state_dict(image.state_dict(), timm.create_model("uniformer_small_video", num_classes=1000, **depth))
    assert "head.weight" in kept  # same class count: the head is kept
    light2d = timm.create_model("uniformer_xxs", **depth)
    light3d = timm.create_model("uniformer_xxs_video", **depth)
    sd = inflate_state_dict(light2d.state_dict(), light3d)
    assert set(light3d.state_dict()) - set(sd) == {"head.weight", "head.bias", "head_cls.weight", "head_cls.bias"}
    assert sd["patch_embed1.proj.0.weight"].shape == (28, 3, 3, 3, 3)
    assert all(sd[k].shape == v.shape for k, v in light3d.state_dict().items() if k in sd)


@functools.lru_cache(maxsize=None)
def image_small() -> torch.nn.Module:
    """2D UniFormer-S with a 400-class head and rule weights (built once)."""
    return apply_rule(timm.create_model("uniformer_small", num_classes=400))


def inflated_small(center: bool) -> torch.nn.Module:
    video = build("uniformer_small_video", num_classes=400)
    video.load_state_dict(inflate_state_dict(image_small().state_dict(), video, center=center), strict=True)
    return video


def test_inflation_constant_clip_centre_frames():
    """Official (mean) inflation, temporally constant clip: what is exactly the image model.

    Each inflated kernel is the 2D kernel / k_t repeated over k_t taps, so wherever all k_t taps see real
    frames the 3D conv of a constant clip IS the 2D conv. The zero temporal padding breaks this at the
    borders: the stem's first output frame sees one padded frame, and each local block's 3x3x3 DPE and
    5x5x5 MHRA reach 1 + 2 frames further, so the border region grows by 3 frames per block
    (T -> T/2 after the stem; S: stage 1 is exact on frames [10, T/2 - 9), stage 2 on [22, T/2 - 21)).
    The global stages 3-4 attend over ALL tokens, border ones included, so from stage 3 on no frame is
    exactly the image model's (and T/2 = 1 does not help: with zero padding a lone frame sees only the
    centre tap, 1/3 or 1/5 of the 2D kernel). Hence: stages 1-2, central frames, T = 96 at 32 px.
    """
    image, video = image_small(), inflated_small(center=False)
    frame = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    clip = frame.unsqueeze(2).expand(-1, -1, 96, -1, -1)
    with torch.no_grad():
        f2d = image.forward_intermediates(frame, indices=[0, 1], stop_early=True, intermediates_only=True)
        f3d = video.forward_intermediates(clip, indices=[0, 1], stop_early=True, intermediates_only=True)
    for stage, (lo, hi) in enumerate([(10, 48 - 9), (22, 48 - 21)]):
        assert f3d[stage].shape[2] == 48
        torch.testing.assert_close(f3d[stage][:, :, lo:hi], f2d[stage].unsqueeze(2).expand(-1, -1, hi - lo, -1, -1),
                                   atol=1e-4, rtol=1e-4, msg=f"stage {stage + 1}")
        for t in (0, 47):  # the border frames differ (the error decays fast inward, below float eps at lo-1 / hi)
            assert (f3d[stage][:, :, t] - f2d[stage]).abs().max().item() > 1e-2, (stage, t)


def test_centre_inflation_constant_clip_is_the_image_model():
    """Centre inflation (official ``inflate_weight(center=True)``: 2D kernel in the middle tap) processes each
    frame with the 2D kernels, so zero padding never enters, and joint attention over T/2 identical copies
    of each token equals the image attention. So for a constant clip ALL four stages (every frame) and the
    logits equal the image model's, on both attention paths."""
    image, video = image_small(), inflated_small(center=True)
    frame = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    clip = frame.unsqueeze(2).expand(-1, -1, 4, -1, -1)
    for fused in (True, False):
        set_fused_attn(image, fused), set_fused_attn(video, fused)
        with torch.no_grad():
            (x2d, f2d), (x3d, f3d) = image.forward_intermediates(frame), video.forward_intermediates(clip)
            l2d, l3d = image.forward_head(x2d), video.forward_head(x3d)
        for a, b in zip(f3d, f2d):
            assert a.shape[2] == 2
            torch.testing.assert_close(a, b.unsqueeze(2).expand_as(a), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(l3d, l2d, atol=1e-5, rtol=0)
    set_fused_attn(image, True), set_fused_attn(video, True)


def test_light_video_with_one_temporal_token_is_the_image_light_model():
    """Light models: with centre inflation and a 2-frame clip (T/2 = 1 after the stem) the 3D network is the
    2D one on frame 0: token pruning, the (1, 2, 2) score pooling and the class token included. (With more
    temporal tokens a constant clip ties the copies' scores, so the pruning is not the image model's.)"""
    image = apply_rule(timm.create_model("uniformer_xxs", num_classes=400))
    video = timm.create_model("uniformer_xxs_video", num_classes=400).eval()
    video.load_state_dict(inflate_state_dict(image.state_dict(), video, center=True), strict=True)
    frames = torch.randn(2, 3, 2, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(video(frames), image(frames[:, :, 0]), atol=1e-5, rtol=0)
