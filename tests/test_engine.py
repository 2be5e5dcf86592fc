"""Fast unit tests of the training / evaluation engine (no training runs; see test_e2e_imagenet.py for those)."""
import argparse
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import uniformer  # noqa: F401  (registers the models)
from uniformer.config import ConfigError, load_params
from uniformer.engine import checkpointing as C
from uniformer.engine import recipe as R
from uniformer.tasks import classification as CLS
from uniformer.data import timm_fixes as FIX
from uniformer.data import transforms as TF
from uniformer.tasks.classification import AccuracyCounter, topk_correct
from uniformer.models.catalog import imagenet_entries


@pytest.fixture(scope="module")
def params():
    return load_params()


# --- metrics -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_classes", [3, 5, 10, 100])
def test_topk_matches_torchmetrics(num_classes):
    from torchmetrics.classification import MulticlassAccuracy

    g = torch.Generator().manual_seed(num_classes)
    counter = AccuracyCounter(num_classes)
    metrics = {k: MulticlassAccuracy(num_classes=num_classes, top_k=min(k, num_classes), average="micro")
               for k in (1, 5)}
    for _ in range(4):  # several batches: counts must add up like torchmetrics' running state
        logits = torch.randn(37, num_classes, generator=g)
        targets = torch.randint(0, num_classes, (37,), generator=g)
        counter.update(logits, targets)
        for m in metrics.values():
            m.update(logits, targets)
        # per batch as well
        c = topk_correct(logits, targets, (1, 5))
        for k in (1, 5):
            ref = MulticlassAccuracy(num_classes=num_classes, top_k=min(k, num_classes), average="micro")
            assert c[k] / 37 == pytest.approx(float(ref(logits, targets)), abs=1e-6)
    s = counter.summary()
    assert s["top1"] == pytest.approx(100 * float(metrics[1].compute()), abs=1e-4)
    assert s["top5"] == pytest.approx(100 * float(metrics[5].compute()), abs=1e-4)
    assert s["samples"] == 4 * 37


def test_accuracy_counter_per_class_and_loss():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    targets = torch.tensor([0, 1, 1, 2])
    c = AccuracyCounter(3)
    c.update(logits, targets)
    assert c.class_total.tolist() == [1, 2, 1]
    assert c.class_correct.tolist() == [1, 1, 0]
    assert c.summary()["loss"] == pytest.approx(float(F.cross_entropy(logits, targets)), rel=1e-6)
    # the all-reduce vector round-trips
    c2 = AccuracyCounter(3).load_vector(c.as_vector() * 2)
    assert c2.n == 8 and c2.class_correct.tolist() == [2, 2, 0] and c2.summary()["top1"] == c.summary()["top1"]


# --- checkpoints ---------------------------------------------------------------------------------------
def _draws(gen):
    return (random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=gen)))


def test_checkpoint_round_trip_weights_only(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))
    cfg = {"opt": "adamw", "weight_decay": 0.05, "opt_eps": 1e-8, "opt_betas": None, "momentum": 0.9,
           "sched": "cosine", "epochs": 4, "min_lr": 1e-5, "warmup_lr": 1e-6, "warmup_epochs": 1, "warmup_prefix": False,
           "cooldown_epochs": 0, "sched_on_updates": True}
    opt = R.build_optimizer(cfg, model, 1e-3)
    sched, _ = R.build_scheduler(cfg, opt, updates_per_epoch=3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    sched.step_update(1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    gen = torch.Generator().manual_seed(3)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    _ = _draws(gen)  # move every stream off its seed
    np.random.randn()  # and leave numpy with a cached gaussian
    state = {"epoch": 2, "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "scaler": scaler.state_dict(), "model_ema": None, "rng": [C.capture_rng_state(gen)],
             "config": {"model": "x", "lr": None, "scale": [0.08, 1.0]}, "history": [{"epoch": 1, "loss": 0.5}]}
    expected = _draws(gen)
    path = C.save_checkpoint(tmp_path / "last.pth", state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]  # no temp file left behind

    loaded = torch.load(path, map_location="cpu", weights_only=True)  # no pickled classes / numpy arrays
    assert loaded["format"] == C.FORMAT
    loaded = C.load_training_checkpoint(path)
    gen2 = torch.Generator().manual_seed(999)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    C.restore_rng_state(loaded["rng"][0], gen2)
    assert _draws(gen2) == expected
    # as train.py resumes: build optimizer and scheduler (which resets the lr to warm-up), then load both
    opt2 = R.build_optimizer(cfg, model, 1e-3)
    sched2, _ = R.build_scheduler(cfg, opt2, updates_per_epoch=3)
    opt2.load_state_dict(loaded["optimizer"])
    sched2.load_state_dict(loaded["scheduler"])
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    assert loaded["history"] == state["history"] and loaded["config"] == state["config"]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    C.save_checkpoint(tmp_path / "last.pth", {"epoch": 1})
    real_save = torch.save

    def dying_save(obj, f, *a, **k):  # writes part of the file, then "the process dies"
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(10)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(tmp_path / "last.pth", {"epoch": 2})
    monkeypatch.undo()
    assert C.load_training_checkpoint(tmp_path / "last.pth")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_resume_without_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(uniformer.CheckpointError, match="--resume"):
        C.load_training_checkpoint(tmp_path / "last.pth")


def test_load_model_weights_model_ema_and_new_head(tmp_path):
    import timm

    kw = dict(num_classes=10, img_size=64)
    src = timm.create_model("uniformer_xxs", **kw)
    ema = timm.create_model("uniformer_xxs", **kw)
    path = C.save_checkpoint(tmp_path / "best.pth", {"model": src.state_dict(), "model_ema": ema.state_dict(),
                                                     "config": {"eval_ema": True}})
    dst = timm.create_model("uniformer_xxs", **kw)
    assert C.load_model_weights(dst, path, weights="auto") == "ema"
    assert torch.equal(dst.head.weight, ema.head.weight)
    assert C.load_model_weights(dst, path, weights="model") == "model"
    assert torch.equal(dst.head.weight, src.head.weight)
    # fine-tuning on another number of classes: the classifier is re-initialised, the rest loaded
    other = timm.create_model("uniformer_xxs", num_classes=7, img_size=64)
    with pytest.raises(uniformer.CheckpointError, match="head"):
        C.load_model_weights(other, path)
    assert "new classifier" in C.load_model_weights(other, path, allow_new_head=True)
    assert torch.equal(other.patch_embed1.proj[0].weight, src.patch_embed1.proj[0].weight)


# --- config / recipe -------------------------------------------------------------------------------------
def test_lr_scaling(params):
    cfg = R.resolve_train_config(params, "imagenet", "paper", "uniformer_small")
    assert R.scaled_lr(cfg, world_size=8) == pytest.approx(1e-3)  # 5e-4 per 512 at 8 x 128
    assert R.scaled_lr(cfg, world_size=4) == pytest.approx(5e-4)
    cfg["accum_steps"] = 2
    assert R.global_batch(cfg, 4) == 1024 and R.scaled_lr(cfg, 4) == pytest.approx(1e-3)
    cfg["lr"] = 3e-4  # an explicit lr is not scaled
    assert R.scaled_lr(cfg, 4) == 3e-4
    xxs = R.resolve_train_config(params, "imagenet", "paper", "uniformer_xxs")
    assert R.scaled_lr(xxs, 8) == pytest.approx(4e-4 * 8)  # official: --lr 4e-4 x (8 x 512) / 512
    base = R.resolve_train_config(params, "imagenet", "paper", "uniformer_base")
    assert R.scaled_lr(base, 8) == pytest.approx(8e-4)  # --lr 4e-4 per 512
    tl384 = R.resolve_train_config(params, "imagenet", "paper", "uniformer_base_tl.in1k_384")
    assert R.scaled_lr(tl384, 8) == pytest.approx(5e-6)  # 8 x 64


def test_config_resolution_blocks_then_overrides(params):
    cfg = R.resolve_train_config(params, "imagenet", "paper", "uniformer_base_tl.in1k_384",
                                 ["epochs=7", "data.root=/x", "scale=[0.5, 1.0]"])
    assert cfg["model_blocks"] == ["uniformer_base_tl", "uniformer_base_tl.in1k_384"]
    assert cfg["drop_path"] == 0.3  # from uniformer_base_tl
    assert cfg["weight_decay"] == 1e-8 and cfg["warmup_epochs"] == 0  # from the 384 block
    assert cfg["epochs"] == 7 and cfg["data"]["root"] == "/x" and cfg["scale"] == [0.5, 1.0]  # overrides last
    assert "models" not in cfg
    # model= as an override picks the per-model blocks like --model
    xs = R.resolve_train_config(params, "imagenet", "paper", None, ["model=uniformer_xs"])
    assert xs["model"] == "uniformer_xs" and xs["model_ema"] and xs["epochs"] == 600
    with pytest.raises(ConfigError, match="unknown key"):
        R.resolve_train_config(params, "imagenet", "smoke", None, ["epoch=3"])
    with pytest.raises(ConfigError, match="amp"):
        R.resolve_train_config(params, "imagenet", "smoke", None, ["amp=fp8"])
    bad = {"train": {"imagenet": {"smoke": {**params["train"]["imagenet"]["smoke"],
                                            "models": {"uniformer_xxs": {"dropath": 0.1}}}}},
           "data": params["data"]}
    with pytest.raises(ConfigError, match="dropath"):
        R.resolve_train_config(bad, "imagenet", "smoke")


def test_published_per_variant_values(params):
    """Every published ImageNet row resolves, with its variant's drop path and recipe."""
    drop_path = {"uniformer_small": 0.1, "uniformer_small_plus": 0.1, "uniformer_small_plus_dim64": 0.1,
                 "uniformer_base": 0.3, "uniformer_base_ls": 0.3, "uniformer_xxs": 0.0, "uniformer_xs": 0.1,
                 "uniformer_small_tl": 0.1, "uniformer_small_dim64_tl": 0.1, "uniformer_small_plus_tl": 0.1,
                 "uniformer_small_plus_dim64_tl": 0.1, "uniformer_base_tl": 0.3, "uniformer_base_dim64_tl": 0.3,
                 "uniformer_large_ls_tl": 0.4}
    for e in imagenet_entries():
        cfg = R.resolve_train_config(params, "imagenet", "paper", e.name)
        assert cfg["drop_path"] == drop_path[e.model], e.name
        assert cfg["opt"] == "adamw" and cfg["smoothing"] == 0.1
        if e.model in ("uniformer_xxs", "uniformer_xs"):
            assert (cfg["epochs"], cfg["warmup_epochs"], cfg["repeated_aug"], cfg["model_ema_decay"]) == \
                (600, 30, False, 0.9999)
        elif e.model.endswith("_tl"):
            assert cfg["mixup"] == 0 and cfg["cutmix"] == 0
            if e.img_size == 384:
                assert (cfg["epochs"], cfg["min_lr"], cfg["weight_decay"], cfg["batch_size"]) == (50, 5e-6, 1e-8, 64)
        else:
            assert (cfg["epochs"], cfg["warmup_epochs"], cfg["mixup"], cfg["cutmix"], cfg["reprob"]) == \
                (300, 5, 0.8, 1.0, 0.25)
            assert cfg["aa"] == "rand-m9-mstd0.5-inc1" and cfg["repeated_aug"] and not cfg["model_ema"]
    xxs = R.resolve_train_config(params, "imagenet", "paper", "uniformer_xxs.in1k_160")
    assert (xxs["aa"], xxs["weight_decay"]) == ("v0", 0.1)
    model = CLS.build_model(xxs, num_classes=5)
    assert TF.train_img_size(xxs, model) == 160  # the tag's published resolution


def test_recipe_builds_with_timm_factories(params):
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy
    from timm.utils import ModelEmaV3

    cfg = R.resolve_train_config(params, "imagenet", "paper", "uniformer_xxs", ["img_size=64"])
    model = CLS.build_model(cfg, num_classes=10)
    opt = R.build_optimizer(cfg, model, R.scaled_lr(cfg, 1))
    assert type(opt).__name__ == "AdamW"
    no_decay = [g for g in opt.param_groups if g["weight_decay"] == 0.0]
    assert no_decay and any(p is model.cls_token for g in no_decay for p in g["params"])
    sched, total = R.build_scheduler(cfg, opt, updates_per_epoch=10)
    assert total == 600
    assert isinstance(R.build_ema(cfg, model), ModelEmaV3)
    tf = TF.build_train_transform(cfg, model)
    from PIL import Image
    assert tuple(tf(Image.new("RGB", (80, 70))).shape) == (3, 64, 64)
    assert tuple(TF.build_eval_transform(model, 64)(Image.new("RGB", (80, 70))).shape) == (3, 64, 64)
    small = R.resolve_train_config(params, "imagenet", "paper", "uniformer_small")
    assert isinstance(CLS.build_mixup(small, 10).mixup, Mixup)
    assert isinstance(CLS.build_loss(small, 10).base, SoftTargetCrossEntropy)
    assert CLS.build_mixup(R.resolve_train_config(params, "imagenet", "smoke"), 10) is None


# --- losses ------------------------------------------------------------------------------------------------
def test_light_model_tuple_loss():
    from timm.loss import LabelSmoothingCrossEntropy

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    loss = CLS.TrainLoss(5, smoothing=0.1, soft_targets=False)
    ls = LabelSmoothingCrossEntropy(0.1)
    assert float(loss((a, b), y)) == pytest.approx(float(0.5 * ls(a, y) + 0.5 * ls(b, y)), rel=1e-6)
    assert float(loss(a, y)) == pytest.approx(float(ls(a, y)), rel=1e-6)
    # with Mixup the targets are soft: same 0.5 / 0.5 split over SoftTargetCrossEntropy
    soft = CLS.TrainLoss(5, smoothing=0.1, soft_targets=True)
    t = torch.softmax(torch.randn(6, 5, generator=g), 1)
    ref = 0.5 * (-(t * a.log_softmax(1)).sum(1).mean()) + 0.5 * (-(t * b.log_softmax(1)).sum(1).mean())
    assert float(soft((a, b), t)) == pytest.approx(float(ref), rel=1e-6)


def test_light_model_train_output_and_backward():
    import timm

    model = timm.create_model("uniformer_xxs", num_classes=4, img_size=64).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, tuple) and len(out) == 2
    loss = CLS.TrainLoss(4, 0.1, False)(out, torch.tensor([0, 3]))
    loss.backward()
    assert model.head.weight.grad is not None and model.head_cls.weight.grad is not None


def test_token_labelling_loss_uses_class_logits_with_mixtoken_target():
    g = torch.Generator().manual_seed(1)
    logits, aux = torch.randn(4, 6, generator=g), torch.randn(4, 9, 6, generator=g)
    y = torch.tensor([0, 1, 2, 3])
    loss = CLS.TrainLoss(6, smoothing=0.0, soft_targets=False)
    assert float(loss((logits, aux, None), y)) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)
    # box of 4 x 8 stage-1 tokens out of 16 x 16 (64 px input): lam = 1 - 32/256
    box = (2, 4, 6, 12)
    lam = 1 - 32 / 256
    target = lam * F.one_hot(y, 6) + (1 - lam) * F.one_hot(y.flip(0), 6)
    ref = -(target * logits.log_softmax(1)).sum(1).mean()
    assert float(loss((logits, aux, box), y, (64, 64))) == pytest.approx(float(ref), rel=1e-6)


def test_token_labelling_model_trains_on_class_logits():
    import timm

    model = timm.create_model("uniformer_small_tl", num_classes=3, img_size=64, depth=(1, 1, 1, 1)).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert len(out) == 3 and out[2] is not None  # MixToken box in training
    CLS.TrainLoss(3, 0.1, False)(out, torch.tensor([0, 2]), x.shape[-2:]).backward()
    assert model.head.weight.grad is not None
    assert model.aux_head.weight.grad is None  # no token-label maps: the dense head is not trained


# --- CLI -------------------------------------------------------------------------------------------------
def test_cli_overrides_may_follow_options():
    from uniformer.engine import evaluate, train

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    train.add_arguments(sub.add_parser("train"))
    evaluate.add_arguments(sub.add_parser("eval"))
    a = p.parse_args(["train", "imagenet", "epochs=2", "--model", "uniformer_small", "lr=1e-3", "--resume",
                      "amp=bf16"])
    assert a.model == "uniformer_small" and a.resume and a.overrides == ["epochs=2", "lr=1e-3", "amp=bf16"]
    a = p.parse_args(["eval", "imagenet", "--checkpoint", "x.pth", "--precision", "bf16", "--channels-last"])
    assert a.precision == "bf16" and a.channels_last and a.compile is None
    with pytest.raises(SystemExit):
        p.parse_args(["train", "imagenet", "--bogus"])


# --- loader throughput -------------------------------------------------------------------------------------
def test_loader_throughput(tmp_path):
    from uniformer.data.synth_imagenet import write_synthetic_imagenet
    from uniformer.profiling.loader_bench import loader_throughput

    write_synthetic_imagenet(tmp_path / "d", classes=2, train_per_class=6, val_per_class=1, size=32, seed=0)
    r = loader_throughput(tmp_path / "d", img_size=32, batch_size=4, num_workers=0, max_batches=5)
    assert r["batches"] == 3 and r["images_timed"] == 8 and r["img_per_s"] > 0 and r["skipped_samples"] == 0


def test_autoaugment_posterize_zero_bits_does_not_crash():
    """timm's AutoAugment v0 / RandAugment inc1 ask Pillow for 0-bit posterize, which pinned Pillow refuses."""
    from PIL import Image
    from timm.data import auto_augment, create_transform

    FIX.patch_timm_posterize()
    black = auto_augment.NAME_TO_OP["PosterizeIncreasing"](Image.new("RGB", (4, 4), (200, 100, 50)), 0)
    assert black.getextrema() == ((0, 0), (0, 0), (0, 0))
    img = Image.new("RGB", (40, 40), (120, 30, 200))
    for aa in ("v0", "rand-m9-mstd0.5-inc1"):  # the light (XXS) and the DeiT recipes' policies
        random.seed(0)
        torch.manual_seed(0)
        tf = create_transform(32, is_training=True, auto_augment=aa)
        for _ in range(300):  # without the patch both raise "bits must be between ... 1 and 8" well before 300
            tf(img)


def test_eval_official_and_own_checkpoints(tmp_path):
    """`uniformer eval` in-process on a tiny set: an official-style {'model': sd} file and our EMA checkpoint."""
    import csv
    import json

    import timm

    from uniformer.data.synth_imagenet import write_synthetic_imagenet
    from uniformer.engine.evaluate import evaluate

    root = tmp_path / "d"
    write_synthetic_imagenet(root, classes=3, train_per_class=1, val_per_class=2, size=32, seed=0)
    official = timm.create_model("uniformer_xxs")  # 1000 classes, as published
    torch.save({"model": official.state_dict(), "epoch": 599}, tmp_path / "official.pth")
    cfg = {"batch_size": 4, "workers": 0, "precision": "fp32", "channels_last": False, "compile": False,
           "img_size": 64, "crop_pct": None}
    data_cfg = {"root": str(root), "source": "synthetic-smoke"}
    m = evaluate(str(tmp_path / "official.pth"), cfg, data_cfg, model_name="uniformer_xxs", out=str(tmp_path / "e1"),
                 progress=False)
    assert (m["checkpoint_kind"], m["weights"], m["num_classes"], m["samples"]) == ("official", "weights", 1000, 6)
    assert (m["img_size"], m["crop_pct"], m["interpolation"]) == (64, 0.875, "bicubic")
    assert json.loads((tmp_path / "e1" / "metrics.json").read_text())["top1"] == m["top1"]
    rows = list(csv.DictReader((tmp_path / "e1" / "per_class.csv").open()))
    assert [int(r["samples"]) for r in rows] == [2, 2, 2]
    # reference: same model, same transform, by hand
    from uniformer.data.imagenet import ImageNetFolder

    val = ImageNetFolder(root, "val", transform=TF.build_eval_transform(official, 64))
    x = torch.stack([val[i][0] for i in range(len(val))])
    y = torch.tensor([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        logits = official.eval()(x)
    assert m["top1"] == pytest.approx(100 * topk_correct(logits, y, (1,))[1] / 6)
    assert m["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-3)  # BN folding: float noise

    # ours: model name, classes, resolution from the checkpoint; EMA weights because the run evaluated on them
    model, ema = timm.create_model("uniformer_xxs", num_classes=3), timm.create_model("uniformer_xxs", num_classes=3)
    C.save_checkpoint(tmp_path / "best.pth", {"model": model.state_dict(), "model_ema": ema.state_dict(),
                                              "config": {"model": "uniformer_xxs", "img_size": 32, "model_kwargs": {},
                                                         "eval_ema": True}})
    cfg["img_size"] = None
    m = evaluate(str(tmp_path / "best.pth"), cfg, data_cfg, out=str(tmp_path / "e2"), progress=False)
    assert (m["checkpoint_kind"], m["weights"], m["model"], m["num_classes"], m["img_size"]) == \
        ("ours", "ema", "uniformer_xxs", 3, 32)
