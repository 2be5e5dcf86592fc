"""The engine on video: recipes of every published entry, clip Mixup, multi-view scoring, class-index guard,
2D->3D initialisation, and a tiny train -> eval run through the CLI functions on a synthetic Kinetics set."""
import json

import pytest
import torch
import torch.nn as nn

import uniformer  # noqa: F401  (registers the models)
from uniformer.config import ConfigError, load_params
from uniformer.data.video import ClassIndexError
from uniformer.data.video_augment import ClipAugment
from uniformer.engine import recipe as R
from uniformer.tasks import classification as CLS
from uniformer.tasks import get_task, open_data, table_of
from uniformer.tasks.classification import AccuracyCounter
from uniformer.tasks.video_classification import VideoData
from uniformer.engine.evaluate import evaluate, evaluate_counts
from uniformer.models.video_catalog import video_entries


@pytest.fixture(scope="module")
def params():
    return load_params()


def test_every_published_video_entry_has_a_paper_recipe_and_its_protocol(params):
    """`train <dataset> --model <entry>` resolves for all 37 entries; the clip protocol is the entry's."""
    from types import SimpleNamespace

    from timm.models import get_pretrained_cfg

    for e in video_entries():
        cfg = R.resolve_train_config(params, e.row["task"], "paper", e.name)
        assert cfg["opt"] == "adamw" and cfg["sched"] == "cosine" and cfg["epochs"] >= 50, e.name
        assert cfg["init"]["checkpoint"], e.name  # ImageNet (Kinetics) or Kinetics (SSV) initialisation
        assert (cfg["init"]["inflate"] == "mean") == e.row["task"].startswith("kinetics"), e.name
        model = SimpleNamespace(pretrained_cfg=get_pretrained_cfg(e.name).to_dict())  # what clip_spec reads
        data = VideoData(e.row["task"], "/nonexistent", params["data"][e.row["task"]]["paper"])
        spec = data.clip_spec(model, cfg["clip"])
        assert (spec.num_frames, spec.crop_size, spec.num_views) == (e.num_frames, e.img_size, e.views), e.name
        assert spec.sampling == ("dense" if e.row["sampling_stride"] else "segment"), e.name
        if e.row["sampling_stride"]:
            assert spec.stride == int(e.row["sampling_stride"]), e.name
        assert spec.random_flip == e.row["task"].startswith("kinetics"), e.name  # SSV: left/right classes
        assert spec.use_offset == (spec.sampling == "dense") and spec.target_fps is None, e.name
        # the official _aug_frame: RandAugment per family, relative-area crop, erasing, 2 clips per video
        aug = ClipAugment.from_cfg(cfg["aug"])
        ra = {"uniformer_xxs_video": "rand-m5-n2-mstd0.25", "uniformer_xxs_ls_video": "rand"}.get(
            e.name.split(".")[0], "rand-m7-n4-mstd0.5-inc1")
        assert (aug.rand_augment, aug.scale, aug.ratio, aug.reprob, aug.remode, aug.num_sample) == \
            (ra, (0.08, 1.0), (0.75, 1.3333), 0.25, "pixel", 2), e.name
        assert cfg["warmup_prefix"] is True, e.name  # COSINE_AFTER_WARMUP
    # per-model blocks apply: UniFormer-B K400 uses the B recipe (drop path 0.3, its own ImageNet weights)
    b = R.resolve_train_config(params, "kinetics400", "paper", "uniformer_base_video.k400_16x4")
    assert (b["drop_path"], b["init"]["checkpoint"]) == (0.3, "checkpoints/uniformer_base_in1k.pth")
    assert table_of("ssv2") == "something" and table_of("kinetics600") == "kinetics"


def test_video_recipe_rejects_image_keys_and_unknown_clip_keys(params):
    with pytest.raises(ConfigError, match="unknown key 'aa'"):
        R.resolve_train_config(params, "kinetics400", "smoke", None, ["aa=rand"])
    with pytest.raises(ConfigError, match="inflate"):
        R.resolve_train_config(params, "kinetics400", "smoke", None, ["init.inflate=sideways"])


def test_cosine_after_warmup_matches_slowfast(params):
    """SlowFast lr_policy 'cosine' with COSINE_AFTER_WARMUP: linear warm-up from WARMUP_START_LR to BASE_LR over
    WARMUP_EPOCHS, then a cosine to COSINE_END_LR over MAX_EPOCH - WARMUP_EPOCHS; per iteration."""
    import math

    cfg = R.resolve_train_config(params, "kinetics400", "paper")
    base, end, start, warm, total = 1e-4, cfg["min_lr"], cfg["warmup_lr"], cfg["warmup_epochs"], cfg["epochs"]
    assert (warm, total, start, end) == (10, 110, 1e-6, 1e-6)
    opt = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=base)
    per_epoch = 7
    sched, epochs = R.build_scheduler(cfg, opt, per_epoch)
    assert epochs == total  # the warm-up is inside the 110 epochs, not added to them

    def slowfast(e):
        if e < warm:
            return start + e * (base - start) / warm
        return end + (base - end) * (math.cos(math.pi * (e - warm) / (total - warm)) + 1) * 0.5

    for e in (0.0, 5.0, 9.0, 10.0, 35.0, 60.0, 100.0, 109.0, 3 / 7):
        sched.step_update(round(e * per_epoch))
        assert opt.param_groups[0]["lr"] == pytest.approx(slowfast(e), rel=1e-6, abs=1e-12), e
    smoke = R.resolve_train_config(params, "kinetics400", "smoke")
    assert smoke["warmup_prefix"] is False


def test_clip_mixup_gives_every_frame_the_same_box_and_weight(params):
    cfg = R.resolve_train_config(params, "kinetics400", "paper")
    cfg.update(mixup=0.0, cutmix=1.0)  # CutMix only: the box must be the same in every frame
    mix = CLS.build_mixup(cfg, 5)
    torch.manual_seed(0)
    x = torch.stack([torch.full((3, 4, 16, 16), float(i)) for i in range(4)])  # clip i is constant i
    y = torch.arange(4)
    xm, ym = mix(x.clone(), y)
    assert xm.shape == x.shape and ym.shape == (4, 5)
    for t in range(1, 4):
        assert torch.equal(xm[:, :, t], xm[:, :, 0])  # same cut in every frame
    assert torch.allclose(ym.sum(1), torch.ones(4))


class _FixedLogits(nn.Module):
    """Returns the per-view logits stored in the input's first voxel (for scoring tests)."""

    def forward(self, x):
        return x[:, :3, 0, 0, 0]


def test_multi_view_scores_are_the_mean_of_view_logits():
    # 2 videos x 3 views; video 0: views disagree, the mean picks class 2; video 1: class 0
    views = torch.tensor([[[5.0, 0, 0], [0, 0, 4], [0, 0, 4]], [[1.0, 0, 0], [1, 0, 0], [0, 3, 0]]])
    x = torch.zeros(2, 3, 3, 1, 2, 2)  # (B, V, C, T, H, W)
    x[..., 0, 0, 0] = views
    loader = [(x, torch.tensor([2, 0]), 0)]
    counter, skipped, _ = evaluate_counts(_FixedLogits(), loader, torch.device("cpu"), AccuracyCounter(3),
                                          task=get_task("video_classification"))
    mean = views.mean(1)
    assert counter.correct1 == 1  # video 1: mean (0.67, 1, 0) -> class 1, wrong; video 0 right
    assert counter.summary()["loss"] == pytest.approx(
        float(torch.nn.functional.cross_entropy(mean, torch.tensor([2, 0]))), rel=1e-6)


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory):
    from uniformer.data.synth_video import write_synthetic_kinetics

    root = tmp_path_factory.mktemp("k") / "kinetics"
    write_synthetic_kinetics(root, classes=3, train_per_class=2, val_per_class=2, frames=16, size=32, seed=0)
    return root


def _video_eval_cfg(**kw):
    return {"batch_size": 2, "workers": 0, "precision": "fp32", "channels_last": False, "compile": False,
            "temporal_clips": None, "spatial_crops": None, "test_scale": None, **kw}


def test_official_video_checkpoint_needs_its_class_index(kinetics, tmp_path):
    """Official files are evaluated only with the class order they were trained with; the metrics say which."""
    import timm

    model = timm.create_model("uniformer_xxs_video.k400_16f_128", num_classes=3)
    torch.save({"model_state": model.state_dict()}, tmp_path / "uniformer_xxs16_128_k400.pth")
    data_cfg = {"root": str(kinetics), "train_list": "train.csv", "val_list": "val.csv", "source": "synthetic-smoke"}
    ckpt = str(tmp_path / "uniformer_xxs16_128_k400.pth")
    with pytest.raises(ClassIndexError, match="kinetics_400_categroies.txt"):
        evaluate(ckpt, _video_eval_cfg(), data_cfg, dataset="kinetics400", model_name="uniformer_xxs_video.k400_16f_128",
                 out=str(tmp_path / "e"), progress=False)
    data_cfg["class_index"] = "classes.txt"
    m = evaluate(ckpt, _video_eval_cfg(temporal_clips=2), data_cfg, dataset="kinetics400",
                 model_name="uniformer_xxs_video.k400_16f_128", out=str(tmp_path / "e"), progress=False)
    assert (m["checkpoint_kind"], m["samples"], m["views"], m["num_frames"], m["table"]) == \
        ("official", 6, 2, 16, "kinetics")
    assert m["class_index"].endswith("classes.txt")
    rows = (tmp_path / "e" / "per_class.csv").read_text().splitlines()
    assert rows[0] == "label,class,samples,correct,top1" and len(rows) == 4


def test_image_checkpoint_initialises_a_video_model_by_mean_inflation(tmp_path):
    import timm

    from uniformer.engine.checkpointing import load_model_weights
    from uniformer.models.uniformer_video import inflate_state_dict

    image = timm.create_model("uniformer_small", depth=(1, 1, 1, 1))
    torch.save({"model": image.state_dict()}, tmp_path / "in1k.pth")
    video = timm.create_model("uniformer_small_video", num_classes=4, depth=(1, 1, 1, 1))
    taken = load_model_weights(video, str(tmp_path / "in1k.pth"), allow_new_head=True, inflate="mean")
    assert "inflated 2D->3D (mean)" in taken and "new classifier" in taken and "head.weight" in taken
    expected = inflate_state_dict(image.state_dict(), video)
    own = video.state_dict()
    assert all(torch.equal(own[k], v) for k, v in expected.items())
    with pytest.raises(Exception, match="does not match"):  # without inflation a 2D file does not fit
        load_model_weights(timm.create_model("uniformer_small_video", num_classes=4, depth=(1, 1, 1, 1)),
                           str(tmp_path / "in1k.pth"), allow_new_head=True)


def test_train_then_eval_a_video_model_in_process(kinetics, tmp_path, params):
    """One epoch of the engine on synthetic Kinetics, then the published multi-view eval of its checkpoint."""
    from uniformer.engine.train import train

    cfg = R.resolve_train_config(params, "kinetics400", "smoke", "uniformer_xxs_video.k400_16f_128",
                                 ["epochs=1", "batch_size=2", "eval_batch_size=2", "warmup_epochs=0",
                                  "clip.crop_size=32", "clip.train_scales=[32,40]", "clip.num_frames=4",
                                  "aug.rand_augment=rand-m7-n4-mstd0.5-inc1", "aug.scale=[0.08,1.0]",
                                  "aug.reprob=0.25", "aug.num_sample=2"])
    cfg["data"].update(root=str(kinetics), synth=None)
    out = tmp_path / "run"
    result = train(cfg, dataset="kinetics400", profile="smoke", out=str(out), progress=False, device="cpu")
    assert (result["table"], result["dataset"], result["num_classes"]) == ("kinetics", "kinetics400", 3)
    assert result["clip_protocol"]["num_frames"] == 4 and result["clip_protocol"]["crop_size"] == 32
    assert result["class_index"].endswith("classes.txt")
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["val_top1"] == result["val_top1"]
    assert result["samples_seen"] == 3 * 2 * 2  # 6 videos, batches of 2 -> 3 steps of 2 videos x 2 clips each
    m = evaluate(str(out / "last.pth"), _video_eval_cfg(temporal_clips=3), dict(cfg["data"]), dataset="kinetics400",
                 out=str(tmp_path / "eval"), progress=False)
    assert (m["checkpoint_kind"], m["views"], m["num_frames"], m["crop_size"], m["samples"]) == \
        ("ours", 3, 4, 32, 6)
    assert m["model"] == "uniformer_xxs_video.k400_16f_128"


def test_missing_split_list_is_a_clear_error(tmp_path):
    data = open_data("ssv2", tmp_path, {"root": str(tmp_path), "train_list": "t.txt", "val_list": "v.txt"})
    with pytest.raises(ConfigError, match=r"v.txt: split list not found.*uniformer data check ssv2"):
        data.classes()
