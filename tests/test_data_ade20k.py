"""ADE20K layout: synthetic writer (deterministic, marker + manifest), reader, and checker problems."""
import json

import numpy as np
import pytest
from PIL import Image

from uniformer.data.ade20k import ADE20K, list_pairs, read_annotation
from uniformer.data.check_ade20k import check_ade20k
from uniformer.data.synth_ade20k import write_synthetic_ade20k
from uniformer.data.synth_out import MARKER, data_source


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("ade") / "set"
    return out, write_synthetic_ade20k(out, classes=5, train=3, val=2, size=32, seed=1)


def test_layout_marker_manifest_and_determinism(synth, tmp_path):
    out, manifest = synth
    assert (out / MARKER).is_file() and json.loads((out / "manifest.json").read_text()) == manifest
    assert sorted(p.name for p in (out / "images" / "validation").iterdir()) == ["ADE_val_00000001.jpg",
                                                                                "ADE_val_00000002.jpg"]
    assert len(manifest["files"]) == 2 * (3 + 2)
    assert data_source(out) == "synthetic (ade20k-synthetic, seed 1)"
    again = write_synthetic_ade20k(tmp_path / "b", classes=5, train=3, val=2, size=32, seed=1)
    assert again["sha256"] == manifest["sha256"]  # byte-identical files
    other = write_synthetic_ade20k(tmp_path / "c", classes=5, train=3, val=2, size=32, seed=2)
    assert other["sha256"] != manifest["sha256"]
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "x.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        write_synthetic_ade20k(tmp_path / "user", train=1, val=0)


def test_annotations_are_grey_pngs_with_other_and_several_classes(synth):
    out, _ = synth
    labels = set()
    for _, ann in list_pairs(out, "train") + list_pairs(out, "val"):
        with Image.open(ann) as im:
            assert im.format == "PNG" and im.mode == "L"  # ADEChallengeData2016: 8-bit grey class indices
        labels |= set(np.unique(read_annotation(ann)).tolist())
    assert 0 in labels and len(labels - {0}) >= 2 and max(labels) <= 5


def test_reader_reduces_zero_label(synth):
    out, _ = synth
    raw = ADE20K(out, "val", reduce_zero_label=False)
    red = ADE20K(out, "val")
    img, label = red[0]
    assert len(red) == 2 and img.dtype == np.uint8 and img.shape[:2] == label.shape
    r = raw[0][1]
    assert (label[r == 0] == 255).all() and (label[r > 0] == r[r > 0] - 1).all()


def test_checker_ok_then_names_each_problem(synth, tmp_path):
    out, _ = synth
    assert check_ade20k(out).ok, check_ade20k(out).summary()
    bad = tmp_path / "bad"
    write_synthetic_ade20k(bad, classes=5, train=4, val=1, size=32, seed=1)
    ann = bad / "annotations" / "training"
    (ann / "ADE_train_00000001.png").unlink()                                         # missing pair
    Image.new("L", (7, 5)).save(ann / "ADE_train_00000002.png")                        # size mismatch
    Image.fromarray(np.full((32, 40), 200, np.uint8), "L").resize(
        Image.open(bad / "images/training/ADE_train_00000003.jpg").size).save(ann / "ADE_train_00000003.png")  # 200
    Image.new("RGB", Image.open(bad / "images/training/ADE_train_00000004.jpg").size).save(
        ann / "ADE_train_00000004.png")                                                # not indexed
    (bad / "annotations" / "validation" / "ADE_val_00000009.png").write_bytes(
        (ann / "ADE_train_00000002.png").read_bytes())                                 # annotation without image
    kinds = {(p.kind, p.path.rsplit("/", 1)[1]) for p in check_ade20k(bad).problems}
    assert kinds == {("missing_annotation", "ADE_train_00000001.jpg"), ("size_mismatch", "ADE_train_00000002.png"),
                     ("label_out_of_range", "ADE_train_00000003.png"), ("not_indexed", "ADE_train_00000004.png"),
                     ("missing_image", "ADE_val_00000009.png")}
    with pytest.raises(FileNotFoundError):
        list_pairs(bad, "train")
    assert not check_ade20k(tmp_path / "nothing").ok


def test_checker_names_truncated_image(tmp_path):
    write_synthetic_ade20k(tmp_path, classes=3, train=1, val=1, size=32, seed=0)
    img = tmp_path / "images" / "validation" / "ADE_val_00000001.jpg"
    img.write_bytes(img.read_bytes()[:200])
    assert [p.kind for p in check_ade20k(tmp_path).problems] == ["unreadable"]


def test_real_copy_names_its_classes_from_object_info(tmp_path):
    """A real copy (no manifest of ours) takes the 150 names of ADEChallengeData2016/objectInfo150.txt (first
    synonym, by Idx), else class_001..; a truncated file is refused by name."""
    from uniformer.config import ConfigError
    from uniformer.tasks import open_data

    data = open_data("ade20k", tmp_path, {})
    assert data.classes()[:2] == ["class_001", "class_002"] and len(data.classes()) == 150
    rows = [f"{i}\t0.01\t10\t1\tname{i}, synonym" for i in range(150, 0, -1)]  # any row order
    rows[-1] = "1\t0.1576\t11664\t1172\twall"
    (tmp_path / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n" + "\n".join(rows) + "\n")
    names = data.classes()
    assert names[0] == "wall" and names[1] == "name2" and names[149] == "name150" and len(names) == 150
    (tmp_path / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n1\t0.1\t1\t1\twall\n")
    with pytest.raises(ConfigError, match="objectInfo150.txt: 1 classes"):
        data.classes()
