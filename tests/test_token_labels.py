"""Token labelling as the official token_labeling code trains it (zihangJiang/TokenLabeling, the same files in
Sense-X/UniFormer image_classification/token_labeling/tlt): map files of generate_label.py, the
DatasetTokenLabel pairing, the RoIAlign crop / flip of the map, TokenLabelCrossEntropy, MixToken."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import uniformer  # noqa: F401  (registers the models)
from uniformer.config import ConfigError, load_params
from uniformer.data import token_labels as TL
from uniformer.engine import recipe as R
from uniformer.models.heads import unmix_tokens
from uniformer.tasks.classification import TrainLoss
from uniformer.tasks.image_classification import token_labels_field


def test_map_file_round_trip_in_the_official_format(tmp_path):
    # generate_label.py: torch.save(stack([top5 values .half(), indices .half()]).permute(0,3,1,2)) -> (2, 5, H, W)
    p = TL.map_path(tmp_path / "labels", "/data/imagenet/train/n01440764/n01440764_10026.JPEG")
    assert p == tmp_path / "labels" / "n01440764" / "n01440764_10026.pt"
    scores = torch.randn(5, 14, 14)
    idx = torch.randint(0, 1000, (5, 14, 14)).float()
    TL.write_map(p, scores, idx)
    raw = torch.load(p, weights_only=True)
    assert raw.shape == (2, 5, 14, 14) and raw.dtype == torch.float16
    m = TL.read_map(p)
    assert m.dtype == torch.float32
    assert torch.equal(m[1], idx) and torch.allclose(m[0], scores.half().float())
    assert sorted(q.name for q in p.parent.iterdir()) == [p.name]  # atomic: no temp file left


def test_missing_map_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"n0001/img_3\.pt: no token-label map for .*token_label\.root"):
        TL.read_map(tmp_path / "n0001" / "img_3.pt", image="train/n0001/img_3.JPEG")


def _quadrant_case():
    """A 40 x 40 image whose quadrant q = 2*(bottom) + (right) has colour 60*q, and its 4 x 4 map whose cells
    score class q at 10 (class q+4, the second of the top 2, at 1)."""
    q = (np.arange(40)[:, None] >= 20) * 2 + (np.arange(40)[None, :] >= 20)
    img = Image.fromarray(np.repeat((60 * q).astype(np.uint8)[..., None], 3, 2))
    cells = torch.tensor(q[::10, ::10], dtype=torch.float32)
    label_map = torch.stack([torch.stack([torch.full((4, 4), 10.0), torch.ones(4, 4)]),
                             torch.stack([cells, cells + 4])])
    return img, label_map


def test_crop_and_flip_of_the_map_follow_the_image(monkeypatch):
    img, label_map = _quadrant_case()
    t = TL.TokenLabelTransform(8, (0.08, 1.0), (0.75, 1.33), hflip=1.0, color_jitter=None,
                               interpolation="bilinear", mean=(0, 0, 0), std=(1, 1, 1))
    # the top half (rows 0-20, all 40 columns) of the flipped image: a 20 x 40 box, so a transposed box shows
    monkeypatch.setattr(t.rrc, "get_params", lambda *a: (0, 0, 20, 40))
    x, m, box = t(img, label_map)
    assert torch.allclose(box, torch.tensor([0.0, 0.0, 1.0, 0.5]))
    # flipped: the left half of the crop shows quadrant 1 (top right of the original), the right half quadrant 0
    assert x[0, 2, 1] * 255 == pytest.approx(60, abs=1) and x[0, 2, 6] * 255 == pytest.approx(0, abs=1)
    cls, tokens = TL.token_label_targets({"map": m[None], "box": box[None]}, 8, (2, 2), smoothing=0.0)
    assert tokens.argmax(-1).view(2, 2).tolist() == [[1, 0], [1, 0]]  # same classes where the image has them
    assert set(cls.topk(2).indices[0].tolist()) == {0, 1}  # the crop holds quadrants 0 and 1 only


def test_token_label_loss_equals_the_hand_computation():
    g = torch.Generator().manual_seed(0)
    C, s = 3, 0.1
    maps = torch.stack([torch.stack([torch.rand(2, 2, 2, generator=g) * 4,
                                     torch.stack([torch.tensor([[0., 1.], [2., 0.]]),
                                                  torch.tensor([[1., 2.], [0., 2.]])])]) for _ in range(2)])
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2)  # the whole map: tokens sit exactly on the map cells
    logits, aux = torch.randn(2, C, generator=g), torch.randn(2, 4, C, generator=g)
    # by hand: dense scores, softmax over classes, * (1 - s + s/C) + s/C; class target from the mean of the map
    dense = torch.zeros(2, C, 2, 2)
    for b in range(2):
        for k in range(2):
            for y in range(2):
                for x in range(2):
                    dense[b, int(maps[b, 1, k, y, x]), y, x] = maps[b, 0, k, y, x]
    on, off = 1 - s + s / C, s / C
    tok = dense.flatten(2).transpose(1, 2).softmax(-1) * on + off
    cls = dense.mean((2, 3)).softmax(-1) * on + off

    def ce(z, t):
        return -(t * z.log_softmax(-1)).sum(-1).mean()

    loss = TrainLoss(C, s, soft_targets=False, dense_weight=0.5)
    targets = {"label": torch.tensor([0, 1]), "map": maps, "box": box}
    got = loss((logits, aux, None), targets, (64, 64))  # 64 px: a 2 x 2 stage-4 grid
    assert float(got) == pytest.approx(float(ce(logits, cls) + 0.5 * ce(aux.flatten(0, 1), tok.flatten(0, 1))),
                                       rel=1e-5)
    # MixToken box (stage-1 units, (y1, x1, y2, x2)): 8 // 8 = one stage-4 token of 4 -> lam = 3/4 (official:
    # lam from the stage-4 box), class target mixed with the flipped batch; token targets stay per image
    got = loss((logits, aux, (0, 0, 8, 8)), targets, (64, 64))
    mixed = 0.75 * cls + 0.25 * cls.flip(0)
    assert float(got) == pytest.approx(float(ce(logits, mixed) + 0.5 * ce(aux.flatten(0, 1), tok.flatten(0, 1))),
                                       rel=1e-5)


def test_mixtoken_targets_flip_the_batch_inside_the_box():
    g = torch.Generator().manual_seed(2)
    tokens = torch.rand(3, 16, 5, generator=g).softmax(-1)  # (B, 4 x 4 tokens, C)
    mixed = TL.mix_token_targets(tokens, (4, 4), (1, 0, 3, 2))
    grid, mgrid = tokens.view(3, 4, 4, 5), mixed.view(3, 4, 4, 5)
    assert torch.equal(mgrid[:, 1:3, 0:2], grid.flip(0)[:, 1:3, 0:2])
    outside = torch.ones(4, 4, dtype=torch.bool)
    outside[1:3, 0:2] = False
    assert torch.equal(mgrid[:, outside], grid[:, outside])
    # the model undoes the mix on its logits instead (official); the loss is the same either way
    aux = torch.randn(3, 16, 5, generator=g)
    unmixed = unmix_tokens(aux, (4, 4), (8, 0, 24, 16))  # the same box in stage-1 units (x 8)
    assert float(TL.soft_ce(unmixed.flatten(0, 1), tokens.flatten(0, 1))) == pytest.approx(
        float(TL.soft_ce(aux.flatten(0, 1), mixed.flatten(0, 1))), rel=1e-6)


def test_recipe_keeps_the_aux_head_only_with_maps():
    params = load_params()
    plain = R.resolve_train_config(params, "imagenet", "paper", "uniformer_small_tl")
    assert plain["token_label"] is None and plain["model_kwargs"]["head"] == "linear"
    assert token_labels_field(plain) == {"token_labels": "none, aux head dropped"}  # metrics.json, table row
    smoke = R.resolve_train_config(params, "imagenet", "smoke", "uniformer_small_tl")
    assert smoke["token_label"]["root"] and "head" not in smoke["model_kwargs"]
    with pytest.raises(ConfigError, match="RandAugment"):
        R.resolve_train_config(params, "imagenet", "paper", "uniformer_small_tl", ["token_label={root: x}"])
    with pytest.raises(ConfigError, match="token-labelling model"):
        R.resolve_train_config(params, "imagenet", "smoke", "uniformer_xxs", ["token_label={root: x}"])


def test_tiny_training_run_with_maps_lowers_the_loss(tmp_path):
    from uniformer.data.synth_imagenet import write_synthetic_imagenet
    from uniformer.engine.train import train

    write_synthetic_imagenet(tmp_path / "d", classes=3, train_per_class=8, val_per_class=2, size=64, seed=0)
    params = load_params()
    cfg = R.resolve_train_config(params, "imagenet", "smoke", "uniformer_small_tl",
                                 ["epochs=4", "batch_size=8", "warmup_epochs=0", "eval_batch_size=8",
                                  f"token_label.root={tmp_path / 'maps'}", "model_kwargs.depth=[1,1,1,1]",
                                  "base_lr=2e-3"])
    cfg["data"].update(root=str(tmp_path / "d"), synth=None)
    result = train(cfg, out=str(tmp_path / "run"), progress=False, device="cpu")
    assert len(list((tmp_path / "maps").rglob("*.pt"))) == 24
    assert TL.write_synthetic_maps(tmp_path / "d", tmp_path / "maps", 3) == 0  # up to date: nothing rewritten
    assert result["token_labels"] == "maps"
    losses = [h["train_loss"] for h in result["history"]]
    assert losses[-1] < losses[0], losses
    # evaluated with its auxiliary head (class logits + 0.5 x the strongest token's), and the row says so
    from uniformer.engine.evaluate import evaluate
    ev_cfg = {"batch_size": 8, "workers": 0, "precision": "fp32", "channels_last": False, "compile": False,
              "img_size": None, "crop_pct": None}
    m = evaluate(str(tmp_path / "run" / "last.pth"), ev_cfg, {"root": str(tmp_path / "d")}, out=str(tmp_path / "e"),
                 progress=False)
    assert m["token_labels"] == "maps" and m["samples"] == 6


def test_table_model_column_says_how_a_tl_model_was_trained(tmp_path):
    import json

    from uniformer.tables.report import build_table, load_results
    from uniformer.tables.spec import get_table

    spec = get_table("imagenet")
    for entry, how in (("uniformer_small_tl.in1k", "maps"), ("uniformer_base_tl.in1k", "none, aux head dropped")):
        d = spec.eval_dir(entry, "smoke", tmp_path)
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"top1": 50.0, "top5": 90.0, "data_source": "synthetic-smoke",
                                                    "token_labels": how}))
    rows, _ = build_table(spec, load_results(spec, "smoke", tmp_path), {"flops_pct": 3.5, "top1": 0.5})
    by = {r["entry"]: r["model"] for r in rows}
    assert by["uniformer_small_tl.in1k"].endswith("[token labels: maps]")
    assert by["uniformer_base_tl.in1k"].endswith("[token labels: none, aux head dropped]")
