"""Token labelling as the official token_labeling code trains it (zihangJiang/TokenLabeling, the same files in
Sense-X/UniFormer image_classification/token_labeling/tlt): map files of generate_label.py, the
DatasetTokenLabel pairing, the RoIAlign crop / flip of the map, TokenLabelCrossEntropy, MixToken."""
import numpy as np
import pytest
import torch
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


# --- label-map-aware RandAugment (official tlt/data/random_augment_label.py) ----------------------------------------
GEOMETRIC_CASES = [("ShearX", 0.3), ("ShearX", -0.25), ("ShearY", 0.3), ("ShearY", -0.2), ("TranslateXRel", 0.3),
                   ("TranslateXRel", -0.2), ("TranslateYRel", 0.25), ("TranslateYRel", -0.3), ("TranslateX", 24.0),
                   ("TranslateY", -12.0), ("Rotate", 30.0), ("Rotate", -25.0), ("Rotate", 90.0)]


def _pil_op(name, img, arg):
    """timm's own image op (what RandAugment runs), nearest neighbour, black fill."""
    from timm.data.auto_augment import NAME_TO_OP
    return NAME_TO_OP[name](img, arg, resample=Image.NEAREST, fillcolor=(0, 0, 0))


def _class_image(classes):
    """Grey level 50 * (class + 1) per pixel (0 = the fill)."""
    return Image.fromarray(np.repeat((50 * (classes + 1)).astype(np.uint8)[..., None], 3, 2))


def _class_map(classes, others=5):
    """(2, 2, H, W) map: class ``classes`` scores 10, class ``others`` 1."""
    c = torch.as_tensor(classes, dtype=torch.float32)
    return torch.stack([torch.stack([torch.full_like(c, 10.0), torch.ones_like(c)]),
                        torch.stack([c, torch.full_like(c, float(others))])])


@pytest.mark.parametrize("name,arg", GEOMETRIC_CASES)
def test_geometric_op_moves_a_same_size_map_pixel_for_pixel(name, arg):
    # map at the image's resolution: every cell must carry the class the image shows there, and the fill
    # (score 0) exactly where the image shows PIL's fill
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 4, (24, 30))  # non-square
    img = _class_image(classes)
    m = TL.affine_map(_class_map(classes), TL.op_matrix(name, arg, 30, 24), (30, 24))
    grey = np.asarray(_pil_op(name, img, arg))[..., 0].astype(int)
    img_cls = np.where(grey == 0, -1, grey // 50 - 1)
    map_cls = np.where(m[0, 0].numpy() == 0, -1, m[1, 0].numpy().astype(int))
    mismatch = (img_cls != map_cls).mean()
    assert mismatch <= (0.01 if name == "Rotate" else 0.0), (name, arg, mismatch)  # rotate: rounding ties
    assert (map_cls == -1).any() and torch.all(m[0, 1][m[0, 0] == 0] == 0)  # shifted in: all top-k scores 0
    assert set(m[1, 1].unique().tolist()) == {5.0}  # indices come along (nearest edge cell outside)


@pytest.mark.parametrize("name,arg", GEOMETRIC_CASES)
def test_square_marked_in_a_coarse_map_follows_the_image_square(name, arg):
    # 128 x 64 image, 16 x 16 map (cells of 8 x 4 pixels: the map is scaled per axis, as an ImageNet map
    # covers a non-square image); a square of class 1 on class 0
    W, H, n = 128, 64, 16
    classes = np.zeros((H, W), int)
    classes[24:40, 48:80] = 1  # rows 6-9, columns 6-9 of the map
    cells = torch.zeros(n, n)
    cells[6:10, 6:10] = 1
    img = _pil_op(name, _class_image(classes), arg)
    m = TL.affine_map(_class_map(cells), TL.op_matrix(name, arg, W, H), (W, H))
    # the image's square at map resolution: cells mostly (> half) covered by square pixels
    sq = (np.asarray(img)[..., 0] == 100).reshape(n, H // n, n, W // n).mean((1, 3)) > 0.5
    moved = (m[1, 0] == 1) & (m[0, 0] > 0)
    assert moved.sum() >= 8
    assert (moved.numpy() != sq).sum() <= 3, (name, arg, moved.int().tolist(), sq.astype(int).tolist())
    ys, xs = np.nonzero(sq)
    my, mx = torch.nonzero(moved, as_tuple=True)
    assert abs(ys.mean() - my.float().mean()) < 0.5 and abs(xs.mean() - mx.float().mean()) < 0.5
    unmoved = cells.bool().numpy()
    assert (unmoved != sq).sum() > 3  # the op does move the square: the check above has teeth


def _only(aug, names, prob=1.0):
    aug.ra.ops = [op for op in aug.ra.ops if op.name in names]
    for op in aug.ra.ops:
        op.prob = prob
    return aug


def test_photometric_ops_leave_the_map_unchanged():
    import random
    aug = TL.LabelRandAugment("rand-m9-mstd0.5-inc1", TL.rand_augment_hparams(32, (0.485, 0.456, 0.406), "random"))
    # inc1: the official _RAND_INCREASING_TRANSFORMS (the same 15 in the official copy and in timm)
    assert [op.name for op in aug.ra.ops] == [
        "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
        "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
        "TranslateXRel", "TranslateYRel"]
    assert all(op.prob == 0.5 and op.magnitude == 9 and op.magnitude_std == 0.5 for op in aug.ra.ops)
    photometric = [op.name for op in aug.ra.ops if op.name not in TL.GEOMETRIC_OPS]
    assert len(photometric) == 10
    _only(aug, photometric)
    img, label_map = _quadrant_case()
    random.seed(0)
    np.random.seed(0)
    changed = 0
    for _ in range(20):
        out, m = aug(img, label_map)
        assert len(aug.log) == 2 and all(n in photometric for n, _, _ in aug.log)
        assert torch.equal(m, label_map)
        changed += not np.array_equal(np.asarray(out), np.asarray(img))
    assert changed > 10


def test_randaugment_moves_image_and_map_with_the_same_draws():
    # geometric ops only, each applied: the sign and the mstd-noised magnitude are drawn once, for both
    import random
    hp = {"translate_const": 14, "img_mean": (0, 0, 0), "interpolation": Image.NEAREST}
    aug = _only(TL.LabelRandAugment("rand-m9-mstd0.5-inc1", hp), TL.GEOMETRIC_OPS)
    classes = np.random.default_rng(1).integers(0, 4, (32, 32))
    img, label_map = _class_image(classes), _class_map(classes)
    seen = set()
    for seed in range(12):
        random.seed(seed)
        np.random.seed(seed)
        out, m = aug(img, label_map)
        seen.update(n for n, _, _ in aug.log)
        grey = np.asarray(out)[..., 0].astype(int)
        img_cls = np.where(grey == 0, -1, grey // 50 - 1)
        map_cls = np.where(m[0, 0].numpy() == 0, -1, m[1, 0].numpy().astype(int))
        assert (img_cls != map_cls).mean() <= 0.02, (seed, aug.log)
    assert seen == {"ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "Rotate"}


def test_label_randaugment_is_timms_randaugment_on_the_image():
    import random

    from timm.data.auto_augment import rand_augment_transform
    hp = TL.rand_augment_hparams(32, (0.485, 0.456, 0.406), "random")
    img, label_map = _quadrant_case()
    ours, theirs = TL.LabelRandAugment("rand-m9-mstd0.5-inc1", hp), rand_augment_transform("rand-m9-mstd0.5-inc1", hp)
    for seed in range(10):
        random.seed(seed)
        np.random.seed(seed)
        a, _ = ours(img, label_map)
        random.seed(seed)
        np.random.seed(seed)
        assert np.array_equal(np.asarray(a), np.asarray(theirs(img)))


def _seeded(t, seed, img, label_map):
    import random
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return t(img, label_map)


def test_token_label_transform_with_randaugment_is_deterministic_per_seed():
    img, label_map = _quadrant_case()
    t = TL.TokenLabelTransform(16, (0.08, 1.0), (0.75, 1.33), hflip=0.5, color_jitter=0.4,
                               interpolation="random", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                               re_prob=0.25, aa="rand-m9-mstd0.5-inc1")
    assert t.jitter is None and t.randaug is not None  # official: no colour jitter with aa
    runs = [_seeded(t, s, img, label_map) for s in (3, 3, 4)]
    for a, b in zip(runs[0], runs[1]):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2]))
    assert runs[0][1].shape == label_map.shape


def test_recipe_allows_randaugment_with_token_labels():
    params = load_params()
    cfg = R.resolve_train_config(params, "imagenet", "paper", "uniformer_small_tl", ["token_label={root: x}"])
    assert cfg["aa"] == "rand-m9-mstd0.5-inc1"  # token_labeling/main.py's --aa default; run.sh sets none
    for model in ("uniformer_base_tl", "uniformer_small_tl.in1k_384"):
        assert R.resolve_train_config(params, "imagenet", "paper", model)["aa"] == "rand-m9-mstd0.5-inc1"
    with pytest.raises(ConfigError, match="only RandAugment"):
        R.resolve_train_config(params, "imagenet", "paper", "uniformer_small_tl", ["token_label={root: x}", "aa=v0"])


def test_token_label_folder_with_randaugment_pickles_and_loads(tmp_path):
    import pickle

    from uniformer.data.synth_imagenet import write_synthetic_imagenet

    write_synthetic_imagenet(tmp_path / "d", classes=2, train_per_class=2, val_per_class=1, size=32, seed=0)
    TL.write_synthetic_maps(tmp_path / "d", tmp_path / "maps", 2, size=7)
    cfg = {"scale": [0.5, 1.0], "ratio": [0.75, 1.33], "hflip": 0.5, "color_jitter": 0.4, "reprob": 0.25,
           "train_interpolation": "random", "remode": "pixel", "recount": 1, "aa": "rand-m9-mstd0.5-inc1"}
    t = TL.build_token_label_transform(cfg, 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    ds = pickle.loads(pickle.dumps(TL.TokenLabelFolder(tmp_path / "d", tmp_path / "maps", t)))  # spawn workers
    assert ds.pair_transform.randaug.ra.ops[0].aug_fn.log is ds.pair_transform.randaug.log
    for i in range(len(ds)):
        x, target, ok = ds.get_checked(i)
        assert ok and x.shape == (3, 16, 16) and target["map"].shape == (2, 2, 7, 7)


def test_official_map_geometry_option():
    # official ops: translations as ours; shear / rotate in map index units (half-cell offsets, no aspect
    # scaling): close to the image on a square map, not exact; the absolute translations have no map op
    blk = np.kron(np.random.default_rng(3).integers(0, 4, (6, 6)), np.ones((4, 4), int))
    img, lab = _class_image(blk), _class_map(blk)
    for name, arg in GEOMETRIC_CASES:
        off = TL.official_map_op(lab, name, arg)
        if name in ("TranslateX", "TranslateY"):
            assert torch.equal(off, lab)
            continue
        ours = TL.affine_map(lab, TL.op_matrix(name, arg, 24, 24), (24, 24))
        grey = np.asarray(_pil_op(name, img, arg))[..., 0].astype(int)
        img_cls = np.where(grey == 0, -1, grey // 50 - 1)
        off_cls = np.where(off[0, 0].numpy() == 0, -1, off[1, 0].numpy().astype(int))
        if name.endswith("Rel"):  # the same shift; scipy's 'constant' also drops pre-images in the last half cell
            assert torch.equal(off[1], ours[1]) and (off[0] != ours[0]).sum() <= 2 * 24
        assert (img_cls != off_cls).mean() <= 0.2, (name, arg)
    aug = TL.TokenLabelTransform(16, (0.5, 1.0), (0.75, 1.33), 0.5, None, "random", (0.5,) * 3, (0.5,) * 3,
                                 aa="rand-m9-mstd0.5-inc1", map_geometry="official")
    assert aug.randaug.geometry == "official"
    params = load_params()
    cfg = R.resolve_train_config(params, "imagenet", "paper", "uniformer_small_tl",
                                 ["token_label={root: x, randaug_geometry: official}"])
    assert cfg["token_label"]["randaug_geometry"] == "official"
    with pytest.raises(ConfigError, match="randaug_geometry"):
        R.resolve_train_config(params, "imagenet", "paper", "uniformer_small_tl",
                               ["token_label={root: x, randaug_geometry: exact}"])
