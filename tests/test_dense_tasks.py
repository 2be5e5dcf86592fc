"""ADE20K segmentation and COCO top-down pose as registry tasks: their batch hooks (collate, train_loss, predict,
meters) on tiny batches, and ``engine.train`` / ``engine.evaluate`` end to end on tiny synthetic sets (metrics.json
keys, resume, eval of our checkpoint), with nothing task-specific in the engine."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import decay_groups
from uniformer.config import load_params
from uniformer.data.coco_pose import DET_FILE
from uniformer.data.synth_ade20k import write_synthetic_ade20k
from uniformer.data.synth_coco_pose import write_synthetic_coco_pose
from uniformer.engine.evaluate import evaluate
from uniformer.engine.pose_metrics import person_box_ap
from uniformer.engine.recipe import resolve_train_config
from uniformer.engine.seg_metrics import ConfusionMatrix
from uniformer.engine.train import train
from uniformer.tasks import get_dataset, open_data
from uniformer.tasks.segmentation import SegMeter

TINY = {"model_kwargs": {"depth": [1, 1, 1, 1], "embed_dim": [16, 32, 64, 128], "head_dim": 16}}


def _cfg(dataset, root, **over):
    params = load_params()
    cfg = resolve_train_config(params, dataset, "smoke", overrides=[f"{k}={v}" for k, v in over.items()])
    cfg["model_kwargs"] = dict(TINY["model_kwargs"])
    cfg["data"].update(root=str(root), synth=None)
    return cfg, load_params()["eval"][dataset]["smoke"]


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    root = tmp_path_factory.mktemp("ade20k")
    write_synthetic_ade20k(root, classes=4, train=8, val=3, size=48)
    return root


@pytest.fixture(scope="module")
def pose(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco_pose")
    write_synthetic_coco_pose(root, train=4, val=2, size=64)
    return root


def _batch(task, ds, n):
    samples, targets = zip(*(ds[i] for i in range(n)))
    return task.collate(samples, targets)


def test_segmentation_hooks(ade):
    cfg, eval_cfg = _cfg("ade20k", ade)
    task, data = get_dataset("ade20k").task, open_data("ade20k", ade, cfg["data"])
    classes = data.classes()
    assert len(classes) == 4  # from the synthetic manifest (real data: 150)
    model = task.build_model(cfg, len(classes))
    x, y = _batch(task, data.train_set(cfg, model, classes), 2)
    assert x.shape == (2, 3, 64, 64) and y.shape == (2, 64, 64) and y.dtype == torch.int64
    assert set(y.unique().tolist()) <= {0, 1, 2, 3, 255}
    loss, n = task.train_loss(model, x, y, task.build_loss(cfg, 4), None)
    assert n == 2 and loss.requires_grad and torch.isfinite(loss)
    test_set, protocol = data.test_set(eval_cfg, model, classes, cfg)
    assert protocol["align"] is True and protocol["img_scale"] == [128, 64]  # fpn: AlignResize; training's scale
    assert protocol["ms_ratios"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and protocol["views"] == 1 + 12
    inputs, labels = task.to_device(*_batch(task, test_set, 2), torch.device("cpu"), False)
    model.eval()
    preds = task.predict(model, inputs)
    assert [(ss.shape, ms.shape) for ss, ms in preds] == [(lab.shape,) * 2 for lab in labels]  # original size
    meter = task.meter(4, test_set)
    meter.update(preds, labels)
    s = meter.summary()
    assert s["samples"] == 2 and set(task.metrics) <= set(s) and {f"{m}_ms" for m in task.metrics} <= set(s)
    again = SegMeter(4).load_vector(meter.as_vector())  # the all-reduce round trip
    assert again.summary() == s
    single, protocol = data.test_set({**eval_cfg, "ms_ratios": None}, model, classes, cfg)
    assert protocol["views"] == 1 and task.predict(model, [single[0][0]])[0][1] is None


def test_seg_meter_is_the_confusion_matrix_of_each_test():
    rng = np.random.default_rng(0)
    gt, pred, pred_ms = rng.integers(0, 3, (2, 5, 7)), rng.integers(0, 3, (2, 5, 7)), rng.integers(0, 3, (2, 5, 7))
    gt[0, 0] = 255
    meter, cm, cm_ms = SegMeter(3), ConfusionMatrix(3), ConfusionMatrix(3)
    meter.update(list(zip(pred, pred_ms)), list(gt))
    for p, q, g in zip(pred, pred_ms, gt):
        cm.add(p, g)
        cm_ms.add(q, g)
    ms = {f"{k}_ms": v for k, v in cm_ms.summary().items()}
    assert ms["mIoU_ms"] != cm.summary()["mIoU"] and meter.summary() == {**cm.summary(), **ms, "samples": 2}
    single = SegMeter(3)
    single.update([(p, None) for p in pred], list(gt))  # single scale only: no *_ms keys
    assert single.summary() == {**cm.summary(), "samples": 2}
    csv = meter.per_class_csv(["a", "b", "c"]).splitlines()
    assert csv[0] == "label,class,iou,acc,iou_ms,acc_ms" and len(csv) == 4


def test_pose_hooks(pose):
    cfg, eval_cfg = _cfg("coco_pose", pose)
    task, data = get_dataset("coco_pose").task, open_data("coco_pose", pose, cfg["data"])
    model = task.build_model(cfg, 17)
    x, (heatmaps, weights) = _batch(task, data.train_set(cfg, model, data.classes()), 3)
    assert x.shape == (3, 3, 96, 64) and heatmaps.shape == (3, 17, 24, 16) and weights.shape == (3, 17)
    loss, n = task.train_loss(model, x, (heatmaps, weights), task.build_loss(cfg, 17), None)
    assert n == 3 and torch.isfinite(loss)
    test_set, protocol = data.test_set(eval_cfg, model, data.classes(), cfg)
    assert protocol["boxes"] == "ground truth" and protocol["flip_test"]
    detected, det_protocol = data.test_set({**eval_cfg, "det_file": DET_FILE}, model, data.classes(), cfg)
    ap = person_box_ap(detected.ann_file, pose / DET_FILE)
    assert 0 < ap < 1 and det_protocol["boxes"] == f"{Path(DET_FILE).name} (person AP {100 * ap:.1f})"
    dets = json.loads((pose / DET_FILE).read_text())
    assert len(detected) == len(dets) and {i.score for i in detected.instances} == {d["score"] for d in dets}
    inputs, metas = task.to_device(*_batch(task, test_set, len(test_set)), torch.device("cpu"), False)
    model.eval()
    out = task.predict(model, inputs)
    assert out.shape == (len(test_set), 17, 24, 16)
    meter = task.meter(17, test_set)
    meter.update(out, metas)
    merged = task.meter(17, test_set).merge([meter.state(), meter.state()])  # gathered over two "processes"
    assert merged.n == 2 * meter.n
    s = meter.summary()
    assert set(task.metrics) <= set(s) and 0.0 <= s["AP"] <= 100.0


def test_pose_rejects_crops_off_the_backbone_stride(pose):
    from uniformer.config import ConfigError
    with pytest.raises(ConfigError, match="multiples of 32"):
        _cfg("coco_pose", pose, image_size="[48,64]")


@pytest.mark.parametrize("dataset", ["ade20k", "coco_pose"])
def test_train_resume_eval(dataset, ade, pose, tmp_path):
    root = ade if dataset == "ade20k" else pose
    cfg, eval_cfg = _cfg(dataset, root, epochs=2, eval_every=1, batch_size=4, warmup_epochs=0)
    out = tmp_path / "run"
    assert train(copy.deepcopy(cfg), dataset, out=str(out), stop_after_epoch=1, progress=False) is None
    result = train(copy.deepcopy(cfg), dataset, out=str(out), resume=True, progress=False)
    task = get_dataset(dataset).task
    primary = task.metrics[0]
    assert result["resumed"] and result["epochs"] == 2 and len(result["history"]) == 2
    assert all(result[f"val_{k}"] is not None for k in task.metrics)
    assert {f"best_val_{primary}", f"chance_{primary}", "train_loss"} <= set(result)
    assert (out / "metrics.json").is_file() and (out / "best.pth").is_file()
    m = evaluate(str(out / "last.pth"), eval_cfg, dict(cfg["data"]), dataset=dataset, out=str(tmp_path / "eval"),
                 progress=False)
    assert all(k in m for k in task.metrics) and m["checkpoint_kind"] == "ours"
    if dataset == "ade20k":  # the smoke eval runs MS+flip too
        assert m["views"] == 13 and all(0 < m[k] <= 100 for k in ("mIoU_ms", "mAcc_ms", "aAcc_ms"))
    # the eval of the last weights is the last epoch's validation (same protocol, same boxes)
    assert m[primary] == pytest.approx(result[f"val_{primary}"], abs=1e-6)


def test_affine_matrix_rotation():
    """Rotation 0 is the test crop (``pose_protocol.crop_matrix``); rotating by r turns the box's direction r
    (mmpose's rotate_point of (0, -1)) into the crop's up."""
    from uniformer.engine.pose_protocol import crop_matrix
    from uniformer.tasks.pose import affine_matrix
    center, scale, size = np.array([50.0, 80.0]), np.array([0.6, 0.8]), (48, 64)
    assert np.allclose(affine_matrix(center, scale, 0.0, size), crop_matrix(center, scale, size))
    m = affine_matrix(center, scale, 30.0, size)
    r = np.deg2rad(30.0)
    src = center + 10 * np.array([np.sin(r), -np.cos(r)])
    dst = m[:, :2] @ src + m[:, 2]
    assert np.allclose(m[:, :2] @ center + m[:, 2], np.array(size) / 2)
    assert np.isclose(dst[0], size[0] / 2) and dst[1] < size[1] / 2


@pytest.mark.parametrize("dataset,synth,marker", [
    ("coco", {"train_images": 2, "val_images": 1, "max_size": 96}, "annotations"),
    ("ade20k", {"classes": 3, "train": 2, "val": 1, "size": 32}, "images"),
    ("coco_pose", {"train": 2, "val": 1, "size": 64}, "annotations")])
def test_ensure_writes_the_synthetic_set_only_into_an_empty_root(dataset, synth, marker, tmp_path):
    empty, real = tmp_path / "empty", tmp_path / "real"
    open_data(dataset, empty, {"synth": synth}).ensure()
    manifest = json.loads((empty / "manifest.json").read_text())
    assert (empty / marker).is_dir() and {k: manifest["params"][k] for k in synth} == synth
    (real / marker).mkdir(parents=True)  # a copy of the real data set: never written into
    open_data(dataset, real, {"synth": synth}).ensure()
    assert sorted(p.name for p in real.iterdir()) == [marker]
    open_data(dataset, tmp_path / "none", {"synth": None}).ensure()  # paper profile: nothing written
    assert not (tmp_path / "none").exists()


def test_segmentation_paper_recipes_decay_as_the_official_configs():
    """Semantic FPN configs have no paramwise_cfg (mmcv decays every parameter, biases and norms included); the
    UperNet configs exempt exactly the names containing absolute_pos_embed, relative_position_bias_table or norm."""
    from uniformer.engine.recipe import resolve_train_config
    from uniformer.models.segmentation import build_segmentor

    params = load_params()
    fpn = resolve_train_config(params, "ade20k", "paper")
    model = build_segmentor("fpn_xxs", 150)
    assert decay_groups(fpn, model, 1e-4) == {1e-4: {n for n, _ in model.named_parameters()}}

    upernet = resolve_train_config(params, "ade20k", "paper", "upernet_hybrid_base")
    assert upernet["no_decay_keys"] == ["absolute_pos_embed", "relative_position_bias_table", "norm"]
    model = build_segmentor("upernet_global_small", 150)
    names = {n for n, _ in model.named_parameters()}
    # the backbone has no position-embedding tables: the exempt names are the norms
    assert decay_groups(upernet, model, 6e-5) == {0.01: {n for n in names if "norm" not in n},
                                                  0.0: {n for n in names if "norm" in n}}


# (config, lr at its global batch, drop path, heatmap sigma, warm-up epochs ~ 500 iterations): the official
# pose_estimation/exp/top_down_<size>_global_<model>/config.py values, 8 GPUs
OFFICIAL_POSE = {"top_down_256x192_global_small": (2e-3, 1024, 0.2, 2.0, 4),
                 "top_down_256x192_global_base": (2e-3, 1024, 0.4, 2.0, 4),
                 "top_down_384x288_global_small": (2e-3, 1024, 0.2, 3.0, 4),
                 "top_down_384x288_global_base": (5e-4, 256, 0.5, 3.0, 1),
                 "top_down_448x320_global_small": (1e-3, 512, 0.2, 3.0, 2),
                 "top_down_448x320_global_base": (5e-4, 256, 0.55, 3.0, 1)}


@pytest.mark.parametrize("config", sorted(OFFICIAL_POSE))
def test_pose_paper_recipes_are_the_official_configs(config):
    """Each config's lr (at its batch on 8 GPUs), drop path, heatmap sigma and fp16; AdamW wd 0.01 on every
    parameter but relative_position_bias_table (paramwise_cfg.custom_keys: biases and norms are decayed)."""
    from uniformer.engine.recipe import global_batch, scaled_lr

    lr, batch, drop_path, sigma, warmup = OFFICIAL_POSE[config]
    cfg = resolve_train_config(load_params(), "coco_pose", "paper", config)
    assert global_batch(cfg, 8) == batch and scaled_lr(cfg, 8) == pytest.approx(lr, rel=1e-12)
    assert (cfg["drop_path"], cfg["heatmap_sigma"], cfg["warmup_epochs"]) == (drop_path, sigma, warmup)
    assert (cfg["opt"], cfg["weight_decay"], cfg["amp"], cfg["epochs"], cfg["decay_milestones"]) == (
        "adamw", 0.01, "fp16", 210, [170, 200])
    if config == "top_down_256x192_global_small":
        from uniformer.models.pose import build_pose_model
        model = build_pose_model(config, **TINY["model_kwargs"])
        model.backbone.register_parameter("relative_position_bias_table", torch.nn.Parameter(torch.zeros(3)))
        names = {n for n, _ in model.named_parameters()}
        assert decay_groups(cfg, model, lr) == {0.01: names - {"backbone.relative_position_bias_table"},
                                                0.0: {"backbone.relative_position_bias_table"}}


def _trained_configs():
    """Every official dense experiment that is trained (not the ``__test_config`` evaluations), by data set."""
    names = sorted(p.stem for p in (Path(__file__).parent / "data" / "full_manifests").glob("*.json")
                   if "__test_config" not in p.stem and not p.stem.startswith("mmdet_"))
    dataset = lambda n: "coco_pose" if n.startswith("top_down") else "ade20k" if n.startswith(("fpn", "upernet")) \
        else "coco"  # noqa: E731
    return [(dataset(n), n) for n in names]


@pytest.mark.parametrize("dataset,config", _trained_configs())
def test_dense_paper_recipes_start_from_the_official_imagenet_checkpoint(dataset, config):
    """Each official dense experiment's drop path is its manifest's ``drop_path_rate``, and its backbone starts
    from the ImageNet checkpoint its run.sh names (S / B; the light XXS / XS from their 224 px files)."""
    manifest = json.loads((Path(__file__).parent / "data" / "full_manifests" / f"{config}.json").read_text())
    cfg = resolve_train_config(load_params(), dataset, "paper", config)
    assert cfg["drop_path"] == manifest["backbone_ctor_overrides"]["drop_path_rate"]
    size = next(s for s in ("xxs", "xs", "small", "base") if config.endswith(s) or f"_{s}_" in f"{config}_")
    want = {"xxs": "uniformer_xxs_224_in1k.pth", "xs": "uniformer_xs_224_in1k.pth"}.get(size, f"uniformer_{size}_in1k.pth")
    assert Path(cfg["backbone_init"]).name == want
    assert resolve_train_config(load_params(), dataset, "smoke")["backbone_init"] is None  # smoke: from scratch


@pytest.mark.parametrize("dataset,config,classifier", [("ade20k", "fpn_xxs", "uniformer_xxs"),
                                                        ("coco_pose", "top_down_256x192_global_small", "uniformer_small")])
def test_backbone_init_loads_the_imagenet_trunk(dataset, config, classifier, tmp_path):
    """``backbone_init`` puts the ImageNet trunk into the segmentor's / pose model's backbone (classifier
    ignored); a missing file is a clear error naming it."""
    import timm

    from uniformer.config import ConfigError
    net = timm.create_model(classifier)
    torch.save({"model": net.state_dict()}, tmp_path / "in1k.pth")
    cfg = resolve_train_config(load_params(), dataset, "smoke", config)
    cfg.update(model_kwargs={}, backbone_init=str(tmp_path / "in1k.pth"))
    task = get_dataset(dataset).task
    backbone = task.build_model(cfg, 150).backbone.state_dict()
    for key in ("patch_embed1.proj.0.weight" if classifier.endswith("xxs") else "patch_embed1.proj.weight",
                "blocks3.0.mlp.fc1.weight"):
        assert torch.equal(backbone[key], net.state_dict()[key])
    cfg["backbone_init"] = str(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="missing.pth.*backbone_init=null"):
        task.build_model(cfg, 150)
