"""COCO instance segmentation as a registry task: its batch hooks (collate, train_loss, predict, meter) on a tiny
batch, the mmdet training transforms, and ``uniformer train coco`` / ``uniformer eval coco`` end to end on a tiny
synthetic set (metrics.json keys, resume, eval of our checkpoint), with nothing detection-specific in the engine."""
import copy
import json

import pytest
import torch

from conftest import decay_groups
from uniformer.cli import main
from uniformer.config import ConfigError, load_params
from uniformer.data.synth_coco import write_synthetic_coco
from uniformer.engine.recipe import resolve_train_config
from uniformer.tasks import get_dataset, open_data
from uniformer.tasks.detection import hflip_sample, multiscale_sample, random_crop_sample, resize_sample

# a narrow light trunk and few RoIs: the hooks and the engine, not the accuracy
TINY = {"embed_dim": [16, 32, 64, 128], "head_dim": 16,
        "detector": {"box_batch_size_per_image": 16, "rpn_pre_nms_top_n_train": 64, "rpn_post_nms_top_n_train": 64,
                     "rpn_pre_nms_top_n_test": 32, "rpn_post_nms_top_n_test": 32, "representation_size": 64}}


def _cfg(root, **over):
    cfg = resolve_train_config(load_params(), "coco", "smoke", overrides=[f"{k}={v}" for k, v in over.items()])
    cfg["model_kwargs"] = copy.deepcopy(TINY)
    cfg["data"].update(root=str(root), synth=None)
    return cfg


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    write_synthetic_coco(root, train_images=4, val_images=2, seed=0, min_size=48, max_size=80)
    return root


def test_detection_hooks(coco):
    cfg = _cfg(coco)
    task, data = get_dataset("coco").task, open_data("coco", coco, cfg["data"])
    classes = data.classes()
    assert classes == ["circle", "square", "triangle", "ring", "star"]  # category ids 1, 3, 7, 12, 20
    model = task.build_model(cfg, len(classes))
    train_set = data.train_set(cfg, model, classes)
    samples, targets = zip(*(train_set[i] for i in range(2)))
    images, targets = task.to_device(*task.collate(samples, targets), torch.device("cpu"), False)
    for im, t in zip(images, targets):
        assert max(im.shape[-2:]) <= 128 and min(im.shape[-2:]) <= 96  # keep-ratio within (128, 96)
        assert t["masks"].shape[-2:] == im.shape[-2:] and len(t["boxes"]) == len(t["labels"]) > 0
    assert task.build_loss(cfg, len(classes)) is None
    model.train()
    loss, n = task.train_loss(model, images, targets, None, None)
    assert n == 2 and loss.requires_grad and torch.isfinite(loss)
    loss.backward()
    val_set = data.val_set(cfg, model, classes)
    assert model.transform.max_size == 128 and model.transform.min_size == (96,)
    inputs, metas = task.collate(*zip(*(val_set[i] for i in range(2))))
    model.eval()
    model.roi_heads.score_thresh = 0.0  # random weights: keep whatever comes out
    with torch.no_grad():
        outputs = task.predict(model, inputs)
    assert [o["masks"].shape[-2:] for o in outputs] == [x.shape[-2:] for x in inputs]  # original resolution
    meter = task.meter(len(classes), val_set)
    meter.update(outputs, metas)
    s = meter.summary()
    assert s["samples"] == 2 and set(task.metrics) <= set(s) and task.metrics[:4] == (
        "box_ap", "mask_ap", "box_ap50", "mask_ap50")
    assert all(0.0 <= s[k] <= 100.0 for k in task.metrics)
    merged = task.meter(len(classes), val_set).merge([meter.state()])  # the gather round trip
    assert merged.summary() == s
    ckpt = {"roi_heads.box_predictor.cls_score.weight": torch.zeros(6, 64)}
    assert task.num_outputs(ckpt, "x.pth") == 5  # background row left out
    with pytest.raises(ConfigError, match="not a detection checkpoint this package reads"):
        task.num_outputs({"model.backbone.weight": torch.zeros(6, 4)}, "other.pth")
    official = {"roi_head.bbox_head.fc_cls.weight": torch.zeros(6, 4)}  # mmdet's layout: converted, by name
    with pytest.raises(ConfigError, match="not mask_rcnn_1x_xxs's layout: roi_head.unknown: no conversion rule"):
        task.from_official_layout({**official, "roi_head.unknown": torch.zeros(1)}, "mask_rcnn_1x_xxs")


def test_resize_and_flip_follow_mmdet():
    image = torch.zeros(3, 30, 40)
    masks = torch.zeros(1, 30, 40, dtype=torch.uint8)
    masks[0, 0:10, 0:20] = 1
    target = {"boxes": torch.tensor([[0.0, 0.0, 20.0, 10.0]]), "labels": torch.tensor([1]), "masks": masks}
    image2, t2 = resize_sample(image, target, (100, 45))  # factor min(100/40, 45/30) = 1.5 -> 45 x 60
    assert image2.shape[-2:] == (45, 60) and t2["masks"].shape[-2:] == (45, 60)
    assert t2["boxes"].tolist() == [[0.0, 0.0, 30.0, 15.0]] and int(t2["masks"].sum()) == 15 * 30
    _, t3 = hflip_sample(image2, t2)
    assert t3["boxes"].tolist() == [[30.0, 0.0, 60.0, 15.0]] and t3["masks"][0, 0, 30:].all()


class _Draws:
    """A stand-in for random.Random that returns the given draws in order (randint / choice / random)."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def randint(self, a, b):
        v = self.draws.pop(0)
        assert a <= v <= b, (a, v, b)
        return v

    def choice(self, seq):
        v = self.draws.pop(0)
        assert v in seq
        return v

    def random(self):
        return self.draws.pop(0)


def _two_objects():
    masks = torch.zeros(2, 60, 80, dtype=torch.uint8)
    masks[0, 0:10, 0:10] = 1
    masks[1, 40:60, 50:80] = 1
    target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 40.0, 80.0, 60.0]]), "labels": torch.tensor([1, 2]),
              "masks": masks}
    return torch.rand(3, 60, 80), target


def test_random_crop_follows_mmdet_absolute_range():
    image, target = _two_objects()
    # crop 30 x 40 (h in [min(60, 20), min(60, 50)], w in [20, 50]) at (y0, x0) = (25, 40), offsets drawn in
    # [0, side - crop]: object 2 (50, 40, 80, 60) shifted to (10, 15, 40, 35) and clipped to the crop's height 30;
    # object 1 (0, 0, 10, 10) falls outside and is dropped with its mask
    crop, t = random_crop_sample(image, target, (20, 50), _Draws(30, 40, 25, 40))
    assert torch.equal(crop, image[:, 25:55, 40:80]) and t["labels"].tolist() == [2]
    assert t["boxes"].tolist() == [[10.0, 15.0, 40.0, 30.0]] and t["masks"].shape == (1, 30, 40)
    assert int(t["masks"].sum()) == 15 * 30  # the part of object 2 inside the crop
    # a crop holding no object keeps the image with empty targets (allow_negative_crop=True)
    crop, t = random_crop_sample(image, target, (20, 50), _Draws(20, 20, 15, 20))
    assert crop.shape[-2:] == (20, 20) and len(t["boxes"]) == 0 and t["masks"].shape == (0, 20, 20)


def test_multiscale_policy_branches():
    image, target = _two_objects()
    # branch 1 (draw < 0.5): one keep-ratio resize, short side 480 -> 480 x 640 (long 1333 not reached)
    out, t = multiscale_sample(image, target, {"short_sides": [480, 800], "crop_short_sides": [400],
                                               "crop_size": [384, 600]}, 1333, _Draws(0.2, 480))
    assert out.shape[-2:] == (480, 640) and t["boxes"][1].tolist() == [400.0, 320.0, 640.0, 480.0]
    # branch 2: resize to short 400 (400 x 533), crop 384 x 450 at (16, 83), resize that to short 800 (long
    # 800 * 450 / 384 = 937.5 -> 938 with mmcv's rounding)
    out, t = multiscale_sample(image, target, {"short_sides": [480, 800], "crop_short_sides": [400],
                                               "crop_size": [384, 600]}, 1333, _Draws(0.7, 400, 384, 450, 16, 83, 800))
    assert out.shape[-2:] == (800, 938) and t["labels"].tolist() == [2]


def test_multiscale_recipe_trains_a_step(coco):
    """A recipe with a multiscale policy (as the 3x+MS configs) feeds the detector images at the policy's short
    sides (long side within img_scale's) and takes a training step; a malformed policy is refused."""
    policy = {"short_sides": [64, 96], "crop_short_sides": [48], "crop_size": [24, 40]}
    cfg = _cfg(coco, img_scale="[160,96]", multiscale=json.dumps(policy))
    task, data = get_dataset("coco").task, open_data("coco", coco, cfg["data"])
    classes = data.classes()
    model = task.build_model(cfg, len(classes)).train()
    ds = data.train_set(cfg, model, classes)
    torch.manual_seed(0)
    samples = [ds[i % len(ds)] for i in range(16)]
    assert {min(x.shape[-2:]) for x, _ in samples} <= {64, 96} and max(max(x.shape[-2:]) for x, _ in samples) <= 160
    inputs, targets = task.collate(*zip(*samples[:2]))
    loss, n = task.train_loss(model, inputs, targets, None, None)
    loss.backward()
    assert n == 2 and torch.isfinite(loss)
    with pytest.raises(ConfigError, match="multiscale"):
        _cfg(coco, multiscale=json.dumps({"short_sides": [64]}))


def test_paper_recipe_decays_as_mmcv_custom_keys():
    """The official configs' paramwise_cfg: no decay on names containing absolute_pos_embed,
    relative_position_bias_table or norm; every other parameter, conv and linear biases included, decayed."""
    from uniformer.models.detection import build_detector

    cfg = resolve_train_config(load_params(), "coco", "paper")
    assert cfg["no_decay_keys"] == ["absolute_pos_embed", "relative_position_bias_table", "norm"]
    model = build_detector("mask_rcnn_1x_xxs", 4)
    groups = decay_groups(cfg, model, 1e-4)
    assert set(groups) == {0.05, 0.0}
    decayed_names, free_names = groups[0.05], groups[0.0]
    assert free_names and all("norm" in n for n in free_names)
    assert "backbone.body.blocks1.0.norm1.bias" in free_names
    # the light stem's BatchNorm is named proj.1 (official key): not matched, so decayed, as mmcv does
    assert {"backbone.fpn.inner_blocks.0.0.bias", "roi_heads.box_head.fc6.bias",
            "backbone.body.patch_embed1.proj.1.weight"} <= decayed_names
    assert len(decayed_names) + len(free_names) == len(list(model.parameters()))


def test_cascade_paper_recipes_are_the_official_3x_ms_ones():
    """Cascade S / B: 36 epochs, steps at 27 / 33, the multi-scale policy, drop path 0.2 / 0.4 (full-model
    manifests); B from the ImageNet UniFormer-B checkpoint."""
    params = load_params()
    small, base = (resolve_train_config(params, "coco", "paper", f"cascade_mask_rcnn_3x_ms_hybrid_{s}")
                   for s in ("small", "base"))
    for cfg in (small, base):
        assert cfg["epochs"] == 36 and cfg["decay_milestones"] == [27, 33] and cfg["multiscale"]["crop_size"] == [384, 600]
    assert (small["drop_path"], base["drop_path"]) == (0.2, 0.4)
    assert base["backbone_init"].endswith("uniformer_base_in1k.pth")


def test_train_resume_eval_through_the_cli(coco, tmp_path, monkeypatch):
    """``uniformer train coco`` stopped after epoch 1 and resumed, then ``uniformer eval coco`` of its checkpoint."""
    params = load_params()
    params["train"]["coco"]["smoke"]["model_kwargs"] = TINY
    params["data"]["coco"]["smoke"].update(root=str(coco), synth=None)
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps(params))  # JSON is YAML
    out, ev = tmp_path / "run", tmp_path / "eval"
    args = ["train", "coco", "--params", str(path), "--out", str(out), "--no-progress", "epochs=2", "eval_every=1",
            "batch_size=2", "warmup_epochs=0"]
    assert main(args + ["--stop-after-epoch", "1"]) == 0 and not (out / "metrics.json").exists()
    assert main(args + ["--resume"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    task = get_dataset("coco").task
    assert result["resumed"] and result["epochs"] == 2 and len(result["history"]) == 2
    assert all(result[f"val_{k}"] is not None for k in task.metrics) and result["chance_box_ap"] == 0.0
    assert result["img_scale"] == [128, 96]
    assert main(["eval", "coco", "--params", str(path), "--checkpoint", str(out / "last.pth"), "--out", str(ev),
                 "--no-progress"]) == 0
    m = json.loads((ev / "metrics.json").read_text())
    assert m["checkpoint_kind"] == "ours" and m["samples"] == 2 and m["img_scale"] == [128, 96]
    # the eval of the last weights is the last epoch's validation (same protocol, same images)
    assert m["box_ap"] == pytest.approx(result["val_box_ap"], abs=1e-6)
    assert m["mask_ap50"] == pytest.approx(result["val_mask_ap50"], abs=1e-6)


def test_eval_takes_an_official_mmdet_checkpoint_directly(coco, tmp_path, capsys):
    """``uniformer eval coco --checkpoint <official .pth> --model <config>``: the mmdet layout (every key of the
    official mask_rcnn_1x_xxs, under ``state_dict`` as mmcv saves it; class rows cut to the synthetic set's
    categories) is converted in memory and loads strictly."""
    from test_detection import fake_official

    k = len(open_data("coco", coco, {}).classes())
    rows = {"fc_cls": k + 1, "fc_reg": 4 * k, "conv_logits": k}  # mmdet: background last in fc_cls only
    cut = lambda name: next((n for layer, n in rows.items() if f".{layer}." in name), None)  # noqa: E731
    sd = {name: v if cut(name) is None else v[:cut(name)]
          for name, v in fake_official("mask_rcnn_1x_xxs", fill=0.01).items()}
    ckpt = tmp_path / "mask_rcnn_1x_xxs_official.pth"
    torch.save({"meta": {"mmdet_version": "2.11.0"}, "state_dict": sd}, ckpt)
    params = load_params()
    params["data"]["coco"]["smoke"].update(root=str(coco), synth=None)
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps(params))
    ev = tmp_path / "eval"
    assert main(["eval", "coco", "--params", str(path), "--checkpoint", str(ckpt), "--model", "mask_rcnn_1x_xxs",
                 "--out", str(ev), "--no-progress"]) == 0
    assert "official layout, converted for mask_rcnn_1x_xxs" in capsys.readouterr().err
    m = json.loads((ev / "metrics.json").read_text())
    assert m["checkpoint_kind"] != "ours" and m["samples"] == 2 and m["box_ap"] is not None


def test_backbone_init_from_an_imagenet_checkpoint(coco, tmp_path):
    """``backbone_init``: the ImageNet trunk lands in the detector's backbone (classifier ignored); a missing file
    is a clear error."""
    import timm
    net = timm.create_model("uniformer_xxs")
    torch.save({"model": net.state_dict()}, tmp_path / "in1k.pth")
    cfg = _cfg(coco)
    cfg["model_kwargs"] = {"detector": TINY["detector"]}  # the full XXS trunk, as the checkpoint's
    cfg["backbone_init"] = str(tmp_path / "in1k.pth")
    model = get_dataset("coco").task.build_model(cfg, 5)
    body = model.backbone.body.state_dict()
    assert torch.equal(body["patch_embed1.proj.0.weight"], net.state_dict()["patch_embed1.proj.0.weight"])
    cfg["backbone_init"] = str(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="missing.pth"):
        get_dataset("coco").task.build_model(cfg, 5)
