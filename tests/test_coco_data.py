"""Synthetic COCO writer, COCO reader, checker and pycocotools evaluation."""
import json
import shutil

import pytest
import torch
from PIL import Image

from uniformer.data.check_coco import check_coco
from uniformer.data.coco import CategoryMap, CocoInstances, read_image
from uniformer.data.synth_coco import CATEGORIES, write_synthetic_coco
from uniformer.data.synth_out import MARKER, data_source
from uniformer.engine.coco_eval import evaluate_outputs, evaluate_results


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco") / "synth"
    write_synthetic_coco(root, train_images=6, val_images=5, seed=3)
    return root


def _ann(root, split="val"):
    return json.loads((root / f"annotations/instances_{split}2017.json").read_text())


def test_layout_marker_and_determinism(coco, tmp_path):
    assert (coco / "annotations/instances_train2017.json").is_file() and (coco / "val2017").is_dir()
    assert (coco / MARKER).is_file() and data_source(coco) == "synthetic (coco-synthetic, seed 3)"
    again = write_synthetic_coco(tmp_path / "b", train_images=6, val_images=5, seed=3)
    first = json.loads((coco / "manifest.json").read_text())
    assert again["files"] == first["files"] and again["sha256"] == first["sha256"]
    for f in first["files"]:
        assert (coco / f["path"]).read_bytes() == (tmp_path / "b" / f["path"]).read_bytes()
    assert write_synthetic_coco(tmp_path / "c", 6, 5, seed=4)["sha256"] != first["sha256"]


def test_synthetic_content_has_every_case(coco):
    anns = _ann(coco, "train")["annotations"] + _ann(coco)["annotations"]
    images = _ann(coco, "train")["images"] + _ann(coco)["images"]
    assert any(isinstance(a["segmentation"], list) for a in anns)  # polygons
    assert any(isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], str) for a in anns)
    assert any(a["iscrowd"] for a in anns)  # crowd regions, uncompressed RLE
    assert all(isinstance(a["segmentation"]["counts"], list) for a in anns if a["iscrowd"])
    assert len({(i["height"], i["width"]) for i in images}) > 5
    assert any(i["height"] > i["width"] for i in images) and any(i["height"] < i["width"] for i in images)
    assert len({a["image_id"] for a in anns}) == len(images)


def test_reader_leaves_out_the_boxes_mmdet_leaves_out(coco, tmp_path):
    """mmdet 2.11's ``_parse_ann_info``: no overlap with the image, under 1 px, or area 0 (the official
    train2017 holds such, e.g. annotation 918: bbox [296.65, 388.33, 1.03, 0.0], area 0) -> not a target."""
    root = tmp_path / "edited"
    shutil.copytree(coco, root)
    raw = _ann(root)
    image = raw["images"][0]
    w, h = image["width"], image["height"]
    base = next(a for a in raw["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"])
    bad = [[w + 1, 0, 5, 5], [2, 2, 0.5, 5], [2, 2, 1.03, 0.0]]
    next_id = max(a["id"] for a in raw["annotations"]) + 1
    raw["annotations"] += [{**base, "id": next_id + k, "bbox": box, "area": box[2] * box[3]}
                           for k, box in enumerate(bad)]
    raw["annotations"].append({**base, "id": next_id + 3, "bbox": [w + 1, 0, 5, 5], "iscrowd": 1})
    (root / "annotations/instances_val2017.json").write_text(json.dumps(raw))
    before = CocoInstances(coco, "val").target(image["id"])
    after = CocoInstances(root, "val").target(image["id"])
    assert torch.equal(before["boxes"], after["boxes"]) and torch.equal(before["crowd_boxes"], after["crowd_boxes"])


def test_reader_targets(coco):
    ds = CocoInstances(coco, "val")
    cats = sorted(c["id"] for c in CATEGORIES)
    assert ds.categories.cat_id(1) == cats[0] and ds.categories.label(cats[-1]) == len(cats)
    raw = _ann(coco)
    for i in range(len(ds)):
        image, t = ds[i]
        info = next(im for im in raw["images"] if im["id"] == int(t["image_id"]))
        assert image.shape == (3, info["height"], info["width"]) and 0 <= image.min() and image.max() <= 1
        objs = [a for a in raw["annotations"] if a["image_id"] == info["id"] and not a["iscrowd"]]
        assert len(t["boxes"]) == len(t["labels"]) == len(t["masks"]) == len(objs)
        assert t["masks"].shape[1:] == (info["height"], info["width"])
        assert (t["boxes"][:, 2:] > t["boxes"][:, :2]).all()
        n_crowd = sum(a["iscrowd"] for a in raw["annotations"] if a["image_id"] == info["id"])
        assert len(t["crowd_boxes"]) == n_crowd


def test_reader_applies_exif(coco):
    """The 5th image of a split is stored rotated with EXIF orientation 6; decoded, it has the json's size."""
    info = _ann(coco)["images"][4]
    path = coco / "val2017" / info["file_name"]
    with Image.open(path) as raw:
        assert raw.size == (info["height"], info["width"])  # stored transposed
    assert read_image(path).size == (info["width"], info["height"])


def test_category_map_round_trip():
    m = CategoryMap([90, 1, 3])
    assert [m.label(c) for c in (1, 3, 90)] == [1, 2, 3] and [m.cat_id(label) for label in (1, 2, 3)] == [1, 3, 90]


def test_checker_clean_set(coco):
    report = check_coco(coco)
    assert report.ok, report.summary()


def test_checker_flags_each_planted_defect(coco, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(coco, root)
    data = _ann(root)
    images, anns = data["images"], data["annotations"]
    (root / "val2017" / images[0]["file_name"]).unlink()  # missing image
    (root / "val2017" / images[1]["file_name"]).write_bytes(b"not a jpeg")  # unreadable image
    anns[0]["segmentation"] = [[1, 2, 3, 4]]  # polygon with 2 points
    rle = next(a for a in anns[1:] if isinstance(a["segmentation"], dict))
    rle["segmentation"] = {"size": [1, 1], "counts": rle["segmentation"]["counts"]}  # RLE of another size
    anns[2]["bbox"] = [5, 5, 0, 10]  # zero-area box
    width = next(im["width"] for im in images if im["id"] == anns[3]["image_id"])
    anns[3]["bbox"] = [width - 2, 0, 50, 10]  # out of the image
    anns[4]["category_id"] = 999  # unknown category
    anns.append(dict(anns[5]))  # duplicate annotation id
    images.append(dict(images[2]))  # duplicate image id
    (root / "annotations/instances_val2017.json").write_text(json.dumps(data))
    report = check_coco(root)
    kinds = sorted(p.kind for p in report.problems)
    for kind in ("missing image", "unreadable image", "invalid segmentation", "zero-area box", "box outside image",
                 "unknown category", "duplicate id"):
        assert kind in kinds, (kind, report.summary())
    assert kinds.count("invalid segmentation") == 2 and kinds.count("duplicate id") == 2
    assert not report.ok and "problem(s)" in report.summary()
    assert any(images[0]["file_name"] in p.path for p in report.problems)


def test_checker_without_annotations(tmp_path):
    report = check_coco(tmp_path)
    assert [p.kind for p in report.problems] == ["missing annotations"]


def _perfect(ds):
    outs = {}
    for i in range(len(ds)):
        _, t = ds[i]
        outs[int(t["image_id"])] = {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                                    "masks": t["masks"][:, None].float()}
    return outs


def test_eval_perfect_prediction_scores_one(coco):
    ds = CocoInstances(coco, "val")
    stats = evaluate_outputs(ds.coco, _perfect(ds))
    for iou_type in ("bbox", "segm"):
        assert stats[iou_type]["AP"] == pytest.approx(1.0)
        assert stats[iou_type]["AP50"] == pytest.approx(1.0) and stats[iou_type]["AP75"] == pytest.approx(1.0)


def test_eval_shifted_and_wrong_class(coco):
    ds = CocoInstances(coco, "val")
    outs = _perfect(ds)
    wrong = {k: dict(v, labels=v["labels"] % 5 + 1) for k, v in outs.items()}  # every label changed
    assert evaluate_outputs(ds.coco, wrong, ("bbox",))["bbox"]["AP"] == 0.0
    # boxes grown by 30% around their centre: IoU 1/1.69 = 0.59 -> counted at 0.5, missed at 0.75
    grown = {}
    for k, v in outs.items():
        b = v["boxes"]
        c, half = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]) / 2 * 1.3
        grown[k] = dict(v, boxes=torch.cat([c - half, c + half], 1))
    s = evaluate_outputs(ds.coco, grown, ("bbox",))["bbox"]
    assert s["AP50"] == pytest.approx(1.0) and s["AP75"] == 0.0
    assert evaluate_results(ds.coco, [], ("bbox", "segm")) == {t: {n: 0.0 for n in s} for t in ("bbox", "segm")}
