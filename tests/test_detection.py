"""COCO detection models: official checkpoints load strictly, and each mmdet protocol difference is pinned
against a hand-computed case (reference dense_protocols.md §2-2.1)."""
import argparse
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import DATA, load_manifest
from uniformer.models import convert
from uniformer.models.cascade import STAGE_STDS, CascadeRoIHeads
from uniformer.models.detection import (AlignedMultiScaleRoIAlign, FixedStrideAnchorGenerator, backbone_stem,
                                        build_detector, mask_rcnn, mmcv_rescale_size, paste_masks_float)

FULL = DATA / "full_manifests"
DET_CONFIGS = sorted(p.stem for p in FULL.glob("*.json") if p.stem.startswith(("mask_rcnn_", "cascade_")))
BUILT = ("mask_rcnn_1x_xxs", "mask_rcnn_1x_xs", "mask_rcnn_1x_hybrid_small", "cascade_mask_rcnn_3x_ms_hybrid_small")


def manifest_keys(config: str) -> dict:
    return json.loads((FULL / f"{config}.json").read_text())["keys"]


def fake_official(config: str, fill=None) -> dict:
    """An official-layout state dict with the manifest's keys and shapes (random, or zero-stride ``fill``)."""
    g = torch.Generator().manual_seed(0)
    if fill is not None:
        return {k: torch.tensor(float(fill)).expand(s) for k, s in manifest_keys(config).items()}
    return {k: torch.randn(s, generator=g) if s else torch.tensor(1) for k, s in manifest_keys(config).items()}


_BUILT_KEYS = {}  # config -> {key: shape} of our model, filled by the strict-load test to avoid building twice


def built_keys(config: str) -> dict:
    if config not in _BUILT_KEYS:
        _BUILT_KEYS[config] = {k: tuple(v.shape) for k, v in convert.build_for(config).state_dict().items()}
    return _BUILT_KEYS[config]


@pytest.fixture(scope="module")
def xxs():
    return mask_rcnn("mask_rcnn_1x_xxs")


def test_every_det_manifest_is_here():
    assert len(DET_CONFIGS) == 8 and sum(c.startswith("cascade_") for c in DET_CONFIGS) == 2


@pytest.mark.parametrize("config", BUILT)
def test_official_layout_loads_strictly(config):
    """Random tensors with exactly the official keys/shapes convert and load with strict=True."""
    model = convert.build_for(config)
    state_dict = convert.convert_checkpoint(fake_official(config), config)
    own = model.state_dict()
    _BUILT_KEYS[config] = {k: tuple(v.shape) for k, v in own.items()}
    assert sorted(own) == sorted(state_dict)
    assert all(own[k].shape == state_dict[k].shape for k in own)
    model.load_state_dict(state_dict, strict=True)
    # parameter count = the official one + the background rows torchvision adds per stage
    # (bbox_pred 4 x (1024 + 1), mask_fcn_logits 1 x (256 + 1))
    stages = 3 if config.startswith("cascade_") else 1
    official = json.loads((FULL / f"{config}.json").read_text())["num_params"]
    assert sum(p.numel() for p in model.parameters()) == official + stages * (4 * 1025 + 257)


@pytest.mark.parametrize("config", [c for c in DET_CONFIGS if c not in BUILT])
def test_other_configs_convert_to_the_model_keys(config):
    """B and 3x configs without building twice: backbone keys are the backbone manifest's (checked against
    our backbone by test_backbone), the rest equals the already built model of the same head type."""
    converted = {k: tuple(v.shape) for k, v in convert.convert_checkpoint(fake_official(config, 0), config).items()}
    twin = "cascade_mask_rcnn_3x_ms_hybrid_small" if config.startswith("cascade") else "mask_rcnn_1x_hybrid_small"
    body = {"backbone.body." + k: tuple(s) for k, s in load_manifest(backbone_stem(config))["keys"].items()}
    heads = {k: s for k, s in built_keys(twin).items() if not k.startswith("backbone.body.")}
    assert converted == {**body, **heads}


def test_unknown_key_is_an_error():
    with pytest.raises(KeyError, match="no conversion rule"):
        convert.convert_checkpoint({"roi_head.bbox_head.extra.weight": torch.zeros(1)}, "mask_rcnn_1x_xxs")


def test_class_rows_move_background_first():
    """mmdet fc_cls rows [c0..c79, bg] -> ours [bg, c0..c79]; fc_reg / conv_logits get zero background rows."""
    sd = {"roi_head.bbox_head.fc_cls.bias": torch.arange(81.0), "roi_head.bbox_head.fc_reg.bias": torch.arange(320.0),
          "roi_head.mask_head.conv_logits.bias": torch.arange(80.0)}
    out = convert.convert_checkpoint(sd, "mask_rcnn_1x_xxs")
    assert out["roi_heads.box_predictor.cls_score.bias"][:3].tolist() == [80, 0, 1]
    assert out["roi_heads.box_predictor.bbox_pred.bias"][:6].tolist() == [0, 0, 0, 0, 0, 1]
    assert out["roi_heads.mask_predictor.mask_fcn_logits.bias"][:3].tolist() == [0, 0, 1]


def test_checkpoint_command_arguments():
    from uniformer.commands import checkpoint
    p = argparse.ArgumentParser()
    checkpoint.add_arguments(p)
    args = p.parse_args(["convert", "a.pth", "--config", "mask_rcnn_1x_xxs", "--out", "b.pth"])
    assert (args.action, args.src, args.config, args.out) == ("convert", "a.pth", "mask_rcnn_1x_xxs", "b.pth")


def test_converter_registry_takes_the_longest_prefix(monkeypatch):
    monkeypatch.setitem(convert.CONVERTERS, "mask_rcnn_1x_", lambda sd, name: {"picked": torch.zeros(1)})
    assert list(convert.convert_checkpoint({}, "mask_rcnn_1x_xxs")) == ["picked"]
    with pytest.raises(KeyError, match="no converter registered"):
        convert.convert_checkpoint({}, "no_such_config")


def test_checkpoint_command_converts_and_refuses(tmp_path, capsys):
    from uniformer.commands import checkpoint
    src, dst = tmp_path / "official.pth", tmp_path / "ours.pth"
    official = fake_official("mask_rcnn_1x_xxs")
    torch.save({"state_dict": official, "meta": {"epoch": 12}}, src)
    args = argparse.Namespace(action="convert", src=str(src), config="mask_rcnn_1x_xxs", out=str(dst))
    assert checkpoint.run(args) == 0
    out = capsys.readouterr().out
    assert "missing keys: 0" in out and "unexpected keys: 0" in out and "mis-shaped keys: 0" in out
    saved = torch.load(dst, weights_only=True)["state_dict"]
    assert torch.equal(saved["roi_heads.box_predictor.cls_score.weight"][0], official["roi_head.bbox_head.fc_cls.weight"][80])
    # a checkpoint lacking a tensor is reported and not written
    del official["rpn_head.rpn_cls.bias"]
    torch.save({"state_dict": official, "meta": {}}, src)
    dst2 = tmp_path / "bad.pth"
    assert checkpoint.run(argparse.Namespace(action="convert", src=str(src), config="mask_rcnn_1x_xxs",
                                             out=str(dst2))) == 1
    assert "missing keys: 1" in capsys.readouterr().out and not dst2.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --- protocol differences, each against a hand-computed case ---------------------------------------------------
def test_resize_rounds_like_mmcv():
    # 480x640: factor min(1333/640, 800/480) = 5/3; 640*5/3 = 1066.67 -> 1067 (torchvision floors: 1066)
    assert mmcv_rescale_size(480, 640) == (800, 1067)
    assert mmcv_rescale_size(375, 500) == (800, 1067)
    assert mmcv_rescale_size(100, 1000) == (133, 1333)  # long side bound: factor 1.333


def test_resize_in_the_model(xxs):
    image, _ = xxs.transform.resize(torch.zeros(3, 480, 640))
    assert tuple(image.shape[-2:]) == (800, 1067)


def test_resize_before_normalising_on_the_uint8_grid():
    """A 2x2 image [[0, 1], [0, 1]] / 255 resized to 4x4: bilinear columns 0, .25, .75, 1 (/255) are uint8 values
    0, 0, 1, 1 after mmcv's uint8 resize; then normalised. The batch keeps that order in eval."""
    from uniformer.models.detection import MMDetTransform
    t = MMDetTransform(4, 4, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]).eval()
    image = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).expand(3, 2, 2) / 255
    batch, _ = t([image])
    expected = (torch.tensor([0.0, 0.0, 1.0, 1.0]) / 255 - 0.5) / 0.25
    assert torch.allclose(batch.tensors[0, 0, 0, :4], expected) and batch.image_sizes == [(4, 4)]


def test_anchors_unrounded_with_fixed_strides():
    gen = FixedStrideAnchorGenerator()
    base = gen.generate_anchors([32], [0.5, 1.0, 2.0])
    r = math.sqrt(0.5)  # ratio 0.5: w = 32/sqrt(.5) = 45.25, h = 32*sqrt(.5) = 22.63 (torchvision: 45.25 -> 46 wide)
    assert torch.allclose(base[0], torch.tensor([-16 / r, -16 * r, 16 / r, 16 * r]))
    assert base[1].tolist() == [-16, -16, 16, 16]
    # an 800x1216 padded image: P6 is 13x19 cells; its stride must be 64, not 800 // 13 = 61
    from torchvision.models.detection.image_list import ImageList
    sizes = [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)]
    feats = [torch.zeros(1, 1, h, w) for h, w in sizes]
    anchors = gen(ImageList(torch.zeros(1, 3, 800, 1216), [(800, 1200)]), feats)[0]
    assert torch.allclose(anchors[0], base[0])  # cell (0, 0) of P2, ratio 0.5: the unrounded base anchor
    p6 = anchors[-13 * 19 * 3:]
    assert p6[19 * 3 + 1].tolist() == [-256, 64 - 256, 256, 64 + 256]  # row 1, col 0, ratio 1
    assert p6[3 + 1].tolist() == [64 - 256, -256, 64 + 256, 256]  # row 0, col 1


def test_roi_align_is_aligned_with_adaptive_sampling():
    """f(x, y) = x on an 8x8 map, box [0, 0, 4, 4] pooled to 1x1: aligned=True samples the 4x4 adaptive grid at
    x = 0, 1, 2, 3 (half-pixel shift) -> 1.5; torchvision's aligned=False samples 0.5..3.5 -> 2.0."""
    feat = torch.arange(8.0).repeat(8, 1)[None, None]
    pool = AlignedMultiScaleRoIAlign(["0"], 1, sampling_ratio=0)
    out = pool({"0": feat}, [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], [(8, 8)])
    assert out.item() == pytest.approx(1.5)
    from torchvision.ops import MultiScaleRoIAlign
    ref = MultiScaleRoIAlign(["0"], 1, sampling_ratio=0)({"0": feat}, [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], [(8, 8)])
    assert ref.item() == pytest.approx(2.0)


def test_roi_level_mapping_is_mmdets():
    """mmdet: level = floor(log2(sqrt(wh) / 56)) clamped to P2..P5; each level's map is filled with its index."""
    sizes = (256, 128, 64, 32)  # a 1024-px image, so every box lies inside the maps
    feats = {str(i): torch.full((1, 1, s, s), float(i)) for i, s in enumerate(sizes)}
    pool = AlignedMultiScaleRoIAlign(list(feats), 1, sampling_ratio=0)
    sides = [20.0, 111.0, 112.0, 223.0, 224.0, 448.0, 900.0]
    boxes = torch.tensor([[0.0, 0.0, s, s] for s in sides])
    out = pool(feats, [boxes], [(1024, 1024)]).flatten().tolist()
    assert out == [0, 0, 1, 1, 2, 3, 3]


def test_mask_paste_float_box_and_ge_threshold():
    """A 28x28 mask of ones in the float box [0.5, 0.5, 2.5, 2.5] on a 4x4 image: pixel centres 0.5 and 2.5 fall on
    the box edges, where bilinear sampling gives exactly 0.5 (kept by >= 0.5), 1.5 is inside, 3.5 outside."""
    probs = paste_masks_float(torch.ones(1, 1, 28, 28), torch.tensor([[0.5, 0.5, 2.5, 2.5]]), (4, 4), threshold=None)
    assert probs[0, 0, 0].tolist() == [0.25, 0.5, 0.25, 0.0]  # corner: 0.5 * 0.5
    assert probs[0, 0, 1].tolist() == [0.5, 1.0, 0.5, 0.0]
    binary = paste_masks_float(torch.ones(1, 1, 28, 28), torch.tensor([[0.5, 0.5, 2.5, 2.5]]), (4, 4))
    assert binary[0, 0, 1].tolist() == [1, 1, 1, 0] and binary[0, 0, 0].tolist() == [0, 1, 0, 0]


def test_test_cfg_thresholds(xxs):
    heads, rpn = xxs.roi_heads, xxs.rpn
    assert (heads.score_thresh, heads.nms_thresh, heads.detections_per_img) == (0.05, 0.5, 100)
    assert (rpn._pre_nms_top_n["testing"], rpn._post_nms_top_n["testing"], rpn.nms_thresh) == (1000, 1000, 0.7)
    assert heads.box_roi_pool.sampling_ratio == 0 and heads.mask_roi_pool.output_size == (14, 14)


# --- cascade -------------------------------------------------------------------------------------------------
def _cascade_heads():
    pool = AlignedMultiScaleRoIAlign(["0"], 7, sampling_ratio=0)
    return CascadeRoIHeads(pool, AlignedMultiScaleRoIAlign(["0"], 14, sampling_ratio=0), num_classes=3).eval()


def test_cascade_stage_coders():
    heads = _cascade_heads()
    for coder, stds in zip(heads.stage_coders, STAGE_STDS):
        assert coder.weights == pytest.approx(tuple(1 / s for s in stds))


def test_cascade_refines_by_argmax_class():
    """RoI [0, 0, 10, 10]; argmax non-background class 2 has dx = 1 (stage 0 std 0.1: shift 0.1*10 = 1 px);
    background (column 0) has the largest logit and must be ignored; clipped to the 10-px-wide image."""
    heads = _cascade_heads()
    logits = torch.tensor([[9.0, 1.0, 2.0]])
    deltas = torch.zeros(1, 12)
    deltas[0, 4] = 5.0  # class 1: would shift 5 px
    deltas[0, 8] = 1.0  # class 2
    rois = heads.refine(0, [torch.tensor([[0.0, 0.0, 10.0, 10.0]])], logits, deltas, [(20, 10)])
    assert rois[0].tolist() == [[1.0, 0.0, 10.0, 10.0]]


def test_cascade_averages_logits_and_masks(monkeypatch):
    """Scores are the softmax of the mean raw logits of the 3 stages; masks the mean of the 3 sigmoid maps."""
    heads = _cascade_heads()
    stage_logits = [torch.tensor([[0.0, 4.0, -3.0]]), torch.tensor([[0.0, 0.0, -3.0]]), torch.tensor([[0.0, 2.0, -3.0]])]
    calls = iter(stage_logits)
    monkeypatch.setattr(heads, "_stage", lambda i, f, rois, shapes: (next(calls), torch.zeros(1, 12)))
    for i, value in enumerate([0.0, 1.0, 2.0]):  # mask logits per stage: constant maps
        for p in heads.mask_predictor[i].parameters():
            torch.nn.init.zeros_(p)
        torch.nn.init.constant_(heads.mask_predictor[i].mask_fcn_logits.bias, value)
    feats = {"0": torch.zeros(1, 256, 32, 32)}
    result, _ = heads(feats, [torch.tensor([[2.0, 2.0, 20.0, 20.0]])], [(32, 32)])
    p = torch.softmax(torch.tensor([0.0, 2.0, -3.0]), 0)  # mean logits; class 2 scores 0.006 < 0.05
    assert result[0]["labels"].tolist() == [1] and result[0]["scores"].tolist() == pytest.approx([p[1].item()])
    expected = (torch.sigmoid(torch.tensor([0.0, 1.0, 2.0]))).mean()
    assert torch.allclose(result[0]["masks"], expected.expand(1, 1, 28, 28))
    assert result[0]["boxes"].tolist() == [[2.0, 2.0, 20.0, 20.0]]


def _zeroed_training_heads():
    """Stage predictors and mask logits zeroed: every class logit 0 (CE = ln 3), no box move, mask logits 0
    (BCE = ln 2), so each stage's losses can be computed by hand."""
    heads = _cascade_heads().train()
    for module in list(heads.box_predictor) + list(heads.mask_predictor):
        for p in module.parameters():
            torch.nn.init.zeros_(p)
    return heads


def test_cascade_samples_each_stage_at_its_iou():
    """A proposal at IoU 0.549 with the ground truth is positive for stage 0 (0.5), negative for stages 1 (0.6)
    and 2 (0.7); the ground-truth box, added as a proposal, is positive in every stage and flagged."""
    heads = _zeroed_training_heads()
    target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([2])}
    proposal = [torch.tensor([[0.0, 0.0, 10.0, 18.2]])]
    for stage, labels in enumerate([[2, 2], [0, 2], [0, 2]]):
        rois, got, matched, is_gt = heads._sample(stage, proposal, [target])[0]
        order = is_gt.long().argsort()  # the proposal first, then the added ground truth
        assert got[order].tolist() == labels and is_gt[order].tolist() == [False, True]
        assert matched.tolist() == [0, 0] and rois[order][1].tolist() == [0.0, 0.0, 10.0, 10.0]


def test_cascade_training_losses_by_hand(monkeypatch):
    """Losses of the three stages for one proposal at IoU 0.549 (+ the ground truth as a proposal), with zeroed
    predictors: CE ln 3, GIoU x 10 summed over positives / sampled RoIs, BCE ln 2, weighted 1 / 0.5 / 0.25;
    stages 1 and 2 get the refined sampled RoIs without the added ground truth (1 RoI in, 2 after adding it)."""
    heads = _zeroed_training_heads()
    seen = []
    sample = heads._sample
    monkeypatch.setattr(heads, "_sample", lambda i, props, targets: seen.append(len(props[0])) or
                        sample(i, props, targets))
    mask = torch.zeros(1, 32, 32, dtype=torch.uint8)
    mask[0, :10, :10] = 1
    target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([2]), "masks": mask}
    feats = {"0": torch.rand(1, 256, 32, 32)}
    result, losses = heads(feats, [torch.tensor([[0.0, 0.0, 10.0, 18.2]])], [(32, 32)], [target])
    assert result == [] and seen == [1, 1, 1]
    giou_loss = 1 - 100 / 182  # the boxes nest: GIoU = IoU
    expected = {
        "s0_loss_classifier": math.log(3), "s0_loss_box_reg": 10 * giou_loss / 2, "s0_loss_mask": math.log(2),
        "s1_loss_classifier": 0.5 * math.log(3), "s1_loss_box_reg": 0.0, "s1_loss_mask": 0.5 * math.log(2),
        "s2_loss_classifier": 0.25 * math.log(3), "s2_loss_box_reg": 0.0, "s2_loss_mask": 0.25 * math.log(2),
    }
    assert {k: float(v.detach()) for k, v in losses.items()} == pytest.approx(expected, abs=1e-5)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in heads.box_head.parameters())


def test_cascade_detector_training_step_end_to_end():
    """The whole Cascade Mask R-CNN (hybrid-S backbone, tiny input) in training mode, one image without objects:
    RPN + 3 x (cls, box, mask) losses, all finite, and their gradient reaches the backbone and every stage."""
    torch.manual_seed(0)
    model = build_detector("cascade_mask_rcnn_3x_ms_hybrid_small", num_classes=3,
                           detector=dict(box_batch_size_per_image=32, rpn_pre_nms_top_n_train=64,
                                         rpn_post_nms_top_n_train=64, min_size=64, max_size=96)).train()
    masks = torch.zeros(2, 64, 96, dtype=torch.uint8)
    masks[0, 12:50, 10:60] = 1
    masks[1, 20:60, 30:90] = 1
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 50.0], [30.0, 20.0, 90.0, 60.0]]),
                "labels": torch.tensor([1, 2]), "masks": masks},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                "masks": torch.zeros(0, 64, 96, dtype=torch.uint8)}]
    losses = model([torch.rand(3, 64, 96) for _ in targets], targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"} | {
        f"s{i}_loss_{k}" for i in range(3) for k in ("classifier", "box_reg", "mask")}
    total = sum(losses.values())
    assert torch.isfinite(total) and float(total.detach()) > 0
    total.backward()
    named = list(model.named_parameters())
    for prefix in ("backbone.body.", "backbone.fpn.", "rpn.head."):
        assert any(p.grad is not None for n, p in named if n.startswith(prefix)), prefix
    for part in ("box_head", "box_predictor", "mask_head", "mask_predictor"):
        for i in range(3):
            assert all(p.grad is not None for p in getattr(model.roi_heads, part)[i].parameters()), (part, i)


def test_mask_rcnn_end_to_end_on_synthetic_coco(tmp_path):
    """Inference (converted random weights) -> pycocotools, and one training step, on a small synthetic COCO;
    the input scale is shrunk to keep the test light."""
    from uniformer.data.coco import CocoInstances
    from uniformer.data.synth_coco import write_synthetic_coco
    from uniformer.engine.coco_eval import evaluate_outputs
    write_synthetic_coco(tmp_path / "coco", train_images=2, val_images=2, seed=0)
    ds = CocoInstances(tmp_path / "coco", "val")
    model = mask_rcnn("mask_rcnn_1x_xxs", num_classes=5)
    model.transform.min_size, model.transform.max_size = (96,), 160
    model.rpn._post_nms_top_n["testing"] = 50
    model.roi_heads.score_thresh = 0.0  # random weights: keep whatever comes out
    outputs = {}
    with torch.no_grad():
        for i in range(len(ds)):
            image, target = ds[i]
            out = model([image])[0]
            assert out["masks"].shape[-2:] == image.shape[-2:] and set(out["masks"].unique().tolist()) <= {0.0, 1.0}
            outputs[int(target["image_id"])] = out
    assert sum(len(o["boxes"]) for o in outputs.values()) > 0
    stats = evaluate_outputs(ds.coco, outputs)
    assert set(stats) == {"bbox", "segm"} and all(0.0 <= stats[t]["AP"] <= 1.0 for t in stats)
    model.train()
    image, target = CocoInstances(tmp_path / "coco", "train", skip_empty=True)[0]
    target = {k: target[k] for k in ("boxes", "labels", "masks")}
    losses = model([image], [target])
    assert set(losses) >= {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()


def test_renames_match_the_reference_keymap():
    """Every example pair of the reference mmdet -> torchvision keymap, and its row transform."""
    import re
    ref = json.loads((FULL / "mmdet_maskrcnn_to_torchvision_keymap.json").read_text())
    shapes = manifest_keys("mask_rcnn_1x_hybrid_small")
    official = {k: torch.arange(math.prod(shapes[k]), dtype=torch.float32).reshape(shapes[k])
                for k in ref["example_key_pairs"]}
    ours = convert.convert_checkpoint(official, "mask_rcnn_1x_hybrid_small")
    expected = {"copy": lambda v: v, "move_last_row_first": lambda v: torch.cat([v[-1:], v[:-1]]),
                "prepend_4_zero_rows": lambda v: torch.cat([torch.zeros((4,) + v.shape[1:]), v]),
                "prepend_1_zero_row": lambda v: torch.cat([torch.zeros((1,) + v.shape[1:]), v])}
    for src, dst in ref["example_key_pairs"].items():
        kind = next(t for pattern, t in ref["transforms"].items() if re.match(pattern, src))
        assert torch.equal(ours[dst], expected[kind](official[src])), (src, dst, kind)
    assert len(ours) == len(ref["example_key_pairs"])


def test_every_official_dense_config_has_a_converter_and_builder():
    """`uniformer checkpoint convert SRC --config NAME` knows every official det / seg / pose experiment."""
    from uniformer.models.convert import BUILDERS, CONVERTERS, _prefix

    names = sorted(p.stem for p in (Path(__file__).parent / "data/full_manifests").glob("*.json")
                   if not p.stem.startswith("mmdet_"))
    assert len(names) == 36
    for name in names:
        prefix = _prefix(name)
        assert prefix in CONVERTERS and prefix in BUILDERS, name


def test_counted_forward_gives_the_published_detector_flops():
    """What mmdet's get_flops.py counts (forward_dummy: 1000 RoIs through the box head, 100 through the mask head,
    every cascade stage) at 800x1280: Mask R-CNN S-h14 published 269 G, and Cascade Mask R-CNN S-h14 747 G, i.e.
    478 G more in its heads (input-independent, so checked on a small image)."""
    from uniformer.models.detection import CountedForward, build_detector
    from uniformer.profiling.flops import count_flops

    mask_rcnn = build_detector("mask_rcnn_1x_hybrid_small")
    assert count_flops(CountedForward(mask_rcnn), (3, 800, 1280))["gflops"] == pytest.approx(269, rel=0.005)
    small = (3, 224, 320)
    heads = (count_flops(CountedForward(build_detector("cascade_mask_rcnn_3x_ms_hybrid_small")), small)["gflops"]
             - count_flops(CountedForward(mask_rcnn), small)["gflops"])
    assert heads == pytest.approx(747 - 269, rel=0.005)
