"""ImageNet data layer: synthetic writer, layout, checker, class index, skipping loader, CLI."""
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import PILToTensor

from uniformer.cli import main as cli
from uniformer.data.check import check_imagenet
from uniformer.data.imagenet import ImageNetFolder, build_loader, dataset_manifest_hash, load_class_index
from uniformer.data.synth_imagenet import write_synthetic_imagenet

CLASSES, TRAIN, VAL, SIZE = 10, 8, 3, 32


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "imagenet"
    write_synthetic_imagenet(root, CLASSES, TRAIN, VAL, SIZE, seed=0)
    return root


@pytest.fixture
def root(clean, tmp_path) -> Path:
    """A private copy of the clean set, free to corrupt."""
    return Path(shutil.copytree(clean, tmp_path / "imagenet"))


def _wnids(root, split="train"):
    return sorted(p.name for p in (root / split).iterdir())


def _files(root, split, wnid):
    return sorted((root / split / wnid).iterdir())


# --- synthetic writer -------------------------------------------------------------------------------------

def test_synth_is_deterministic_per_seed(tmp_path):
    a = write_synthetic_imagenet(tmp_path / "a", 3, 3, 1, SIZE, seed=7)
    b = write_synthetic_imagenet(tmp_path / "b", 3, 3, 1, SIZE, seed=7)
    c = write_synthetic_imagenet(tmp_path / "c", 3, 3, 1, SIZE, seed=8)
    assert a["sha256"] == b["sha256"] != c["sha256"]
    assert [(tmp_path / "a" / f["path"]).read_bytes() == (tmp_path / "b" / f["path"]).read_bytes()
            for f in a["files"]] == [True] * len(a["files"])
    on_disk = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert on_disk["sha256"] == a["sha256"] == dataset_manifest_hash(tmp_path / "a")
    assert on_disk["params"] == dict(classes=3, train_per_class=3, val_per_class=1, size=SIZE, seed=7)
    # Rewriting into the same folder replaces the old set (no stale classes left behind).
    write_synthetic_imagenet(tmp_path / "a", 2, 1, 1, SIZE, seed=8)
    assert len(_wnids(tmp_path / "a")) == 2
    # Snakemake deletes a rule's output (the manifest) before re-running it; a killed write leaves none either:
    # the marker written first still identifies the folder as ours, so the rewrite goes ahead.
    (tmp_path / "a" / "manifest.json").unlink()
    assert write_synthetic_imagenet(tmp_path / "a", 3, 3, 1, SIZE, seed=7)["sha256"] == b["sha256"]
    # A folder with user files and neither marker nor our manifest is never touched.
    (tmp_path / "mine" / "train").mkdir(parents=True)
    (tmp_path / "mine" / "train" / "keep.JPEG").write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"mine: not empty and not a synthetic set written here"):
        write_synthetic_imagenet(tmp_path / "mine", 2, 1, 1, SIZE, seed=0)
    assert (tmp_path / "mine" / "train" / "keep.JPEG").exists()


def test_synth_has_exact_imagenet_layout(clean):
    assert sorted(p.name for p in clean.iterdir()) == [".uniformer-synthetic", "manifest.json", "train", "val"]
    manifest = json.loads((clean / "manifest.json").read_text())
    wnids = _wnids(clean)
    assert wnids == _wnids(clean, "val") and len(wnids) == CLASSES
    assert all(re.fullmatch(r"n0\d{7}", w) for w in wnids)
    assert [c["wnid"] for c in manifest["classes"]] == wnids  # label = sorted position
    for split, per_class in (("train", TRAIN), ("val", VAL)):
        for wnid in wnids:
            files = _files(clean, split, wnid)
            assert len(files) == per_class and all(f.suffix == ".JPEG" for f in files)
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert len(listed) == CLASSES * (TRAIN + VAL)
    for rel in listed:
        with Image.open(clean / rel) as img:
            assert img.format == "JPEG" and img.size == (SIZE, SIZE)
            img.load()


def test_dataset_labels_are_sorted_wnid_positions(clean):
    ds = ImageNetFolder(clean, "train")
    assert ds.classes == _wnids(clean) and len(ds) == CLASSES * TRAIN
    assert all(target == ds.classes.index(Path(path).parent.name) for path, target in ds.samples)
    img, target = ds[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and target == 0


def _features(img: Image.Image) -> np.ndarray:
    """Colour-family histogram of the saturated pixels (weighted by their area), which a pattern class fixes."""
    hsv = np.asarray(img.convert("HSV"), np.float32) / 255
    vivid = (hsv[..., 1] > .45) & (hsv[..., 2] > .3)
    hist, _ = np.histogram(hsv[..., 0][vivid], bins=14, range=(0, 1))
    return np.append(hist / vivid.size, vivid.mean())


def test_classes_differ(clean):
    """Per-class statistics separate the classes: nearest-centroid (leave-one-out) is far above chance."""
    ds = ImageNetFolder(clean, "train")
    x = np.stack([_features(ds[i][0]) for i in range(len(ds))])
    y = np.array(ds.targets)
    centroids = np.stack([x[y == k].mean(0) for k in range(CLASSES)])
    assert np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)[~np.eye(CLASSES, dtype=bool)].min() > 0
    correct = 0
    for i in range(len(x)):
        c = centroids.copy()
        c[y[i]] = (centroids[y[i]] * TRAIN - x[i]) / (TRAIN - 1)  # leave sample i out of its own centroid
        correct += int(np.argmin(np.linalg.norm(c - x[i], axis=1)) == y[i])
    assert correct / len(x) > 0.4, correct / len(x)  # chance is 0.1


# --- checker and CLI ---------------------------------------------------------------------------------------

def test_check_passes_on_clean_set(clean, capsys):
    report = check_imagenet(clean)
    assert report.ok, [str(p) for p in report.problems]
    assert report.classes == {"train": CLASSES, "val": CLASSES}
    assert report.images == {"train": CLASSES * TRAIN, "val": CLASSES * VAL}
    assert cli(["data", "check", "imagenet", "--root", str(clean)]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_names_every_problem(root, capsys):
    w = _wnids(root)
    truncated, garbage = _files(root, "train", w[0])[0], _files(root, "train", w[1])[0]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    garbage.write_bytes(os.urandom(500))
    stray = root / "train" / w[2] / "notes.txt"
    stray.write_text("not an image")
    shutil.rmtree(root / "val" / w[3])
    for f in _files(root, "val", w[4]):
        f.unlink()

    expected = {str(truncated): ("bad image", "truncated image"), str(garbage): ("bad image", "unreadable image"),
                str(stray): ("wrong extension", "not an image"),
                str(root / "val" / w[3]): ("class mismatch", "missing"),
                str(root / "val" / w[4]): ("empty class", "empty class folder")}
    for workers in (0, 2):
        problems = {p.path: p for p in check_imagenet(root, workers=workers).problems}
        assert set(problems) == set(expected)
        for path, (kind, words) in expected.items():
            assert problems[path].kind == kind and words in problems[path].message, problems[path]

    assert cli(["data", "check", "imagenet", "--root", str(root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert {line.split(": ")[0] for line in out[:-1]} == set(expected)
    assert "5 problem(s)" in out[-1]


def test_check_missing_split(root):
    shutil.rmtree(root / "val")
    (problem,) = check_imagenet(root).problems
    assert problem.path == str(root / "val") and "missing split folder" in problem.message
    with pytest.raises(FileNotFoundError, match=r"val: missing split folder; expected ROOT/val/<wnid>/\*\.JPEG"):
        ImageNetFolder(root, "val")


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["data", "synth", "imagenet", "--out", str(out), "--classes", "2", "--train-per-class", "2",
            "--val-per-class", "1", "--size", "24", "--seed", "3"]
    assert cli(argv) == 0
    assert json.loads((out / "manifest.json").read_text())["sha256"] in capsys.readouterr().out
    assert check_imagenet(out).ok
    assert cli(argv[:5] + ["--classes", "100000"]) == 2  # a clear error, not a traceback


# --- loader ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_skips_bad_image_and_counts_it(root, num_workers, caplog):
    ds = ImageNetFolder(root, "train", transform=PILToTensor())
    bad_index = 5
    bad = Path(ds.samples[bad_index][0])
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    loader = build_loader(ds, batch_size=4, shuffle=True, num_workers=num_workers, seed=0)
    with caplog.at_level(logging.WARNING):
        batches = list(loader)
    assert sum(len(images) for images, _, _ in batches) == len(ds)
    assert sum(n_skipped for _, _, n_skipped in batches) == 1
    assert all(images.shape[1:] == (3, SIZE, SIZE) and images.dtype == torch.uint8 for images, _, _ in batches)
    if num_workers == 0:  # worker processes keep their own bad_files and log records
        assert ds.bad_files == [str(bad)]
        assert [r.getMessage() for r in caplog.records if str(bad) in r.getMessage()] != []
    # The substitute is the next sample in index order: reproducible and label-consistent.
    img, target = ds[bad_index]
    next_img, next_target = ds[bad_index + 1]
    assert torch.equal(img, next_img) and target == next_target


def test_loader_is_seeded_and_distributed_splits_the_data(clean):
    ds = ImageNetFolder(clean, "val", transform=PILToTensor())

    def order(seed):
        return [t for _, targets, _ in build_loader(ds, 4, True, 0, seed=seed) for t in targets.tolist()]

    assert order(0) == order(0) != order(1)
    halves = [build_loader(ds, 4, True, 0, seed=0, distributed=True, num_replicas=2, rank=r) for r in (0, 1)]
    indices = [list(loader.sampler) for loader in halves]
    assert len(indices[0]) == len(indices[1]) and set(indices[0]) | set(indices[1]) == set(range(len(ds)))


# --- class index and manifest hash ---------------------------------------------------------------------------

def test_class_index_file_reorders_labels(root, tmp_path):
    wnids = _wnids(root)
    reordered = wnids[::-1]
    files = {
        "lines.txt": "\n".join(reordered) + "\n",
        "names.txt": "".join(f"{w} some class name\n" for w in reordered),  # LOC_synset_mapping.txt style
        "tabbed.txt": "".join(f"{w}\t{len(wnids) - 1 - i}\n" for i, w in enumerate(wnids)),
        "index.json": json.dumps({str(i): [w, f"name{i}"] for i, w in enumerate(reordered)}),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        assert load_class_index(tmp_path / name) == reordered, name
        ds = ImageNetFolder(root, "train", class_index=tmp_path / name)
        assert ds.classes == reordered
        assert all(target == reordered.index(Path(path).parent.name) for path, target in ds.samples)
    # A list works too: val takes train's labels even when it lacks a class.
    shutil.rmtree(root / "val" / wnids[0])
    val = ImageNetFolder(root, "val", class_index=wnids)
    assert val.classes == wnids and set(val.targets) == set(range(1, len(wnids)))


def test_class_index_errors_name_the_problem(root, tmp_path):
    partial = tmp_path / "partial.txt"
    partial.write_text("\n".join(_wnids(root)[1:]))
    with pytest.raises(FileNotFoundError, match=f"not in the class index: {_wnids(root)[0]}"):
        ImageNetFolder(root, "train", class_index=partial)
    gap = tmp_path / "gap.txt"
    gap.write_text("n00000001\t0\nn00000002\t2\n")
    with pytest.raises(ValueError, match="gap.txt: class indices must be 0..1"):
        load_class_index(gap)


def test_manifest_hash_without_manifest_follows_the_files(root):
    (root / "manifest.json").unlink()
    before = dataset_manifest_hash(root)
    assert before == dataset_manifest_hash(root)
    victim = _files(root, "train", _wnids(root)[0])[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert dataset_manifest_hash(root) != before
