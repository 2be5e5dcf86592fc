"""COCO keypoints: synthetic writer, instance reader, checker, and keypoint AP through pycocotools."""
import json

import numpy as np
import pytest

from uniformer.data.check_coco_pose import check_coco_pose
from uniformer.data.coco_pose import DET_FILE, ann_file, clean_box, load_instances
from uniformer.data.synth_coco_pose import write_synthetic_coco_pose
from uniformer.data.synth_out import MARKER
from uniformer.engine.pose_metrics import keypoint_ap, person_box_ap
from uniformer.engine.pose_protocol import oks_nms


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("cocopose") / "set"
    return out, write_synthetic_coco_pose(out, train=3, val=3, size=64, seed=0)


def test_writer_layout_and_determinism(synth, tmp_path):
    out, manifest = synth
    assert (out / MARKER).is_file() and (out / "manifest.json").is_file() and (out / DET_FILE).is_file()
    coco = json.loads(ann_file(out, "val").read_text())
    kps = np.array([a["keypoints"] for a in coco["annotations"]]).reshape(-1, 17, 3)
    assert set(np.unique(kps[..., 2])) <= {0, 1, 2} and (kps[..., 2] == 2).any()
    assert coco["categories"][0]["keypoints"][0] == "nose" and len(coco["categories"][0]["skeleton"]) == 19
    assert write_synthetic_coco_pose(tmp_path / "b", train=3, val=3, size=64, seed=0)["sha256"] == manifest["sha256"]


def test_reader_detected_and_ground_truth_boxes(synth):
    out, _ = synth
    det = load_instances(out, "val")
    dets = json.loads((out / DET_FILE).read_text())
    assert len(det) == len(dets) and det[0].keypoints is None
    assert len(load_instances(out, "val", det_bbox_thr=0.4)) == sum(d["score"] >= 0.4 for d in dets)
    gt = load_instances(out, "train", det_file=None)
    assert gt and gt[0].keypoints.shape == (17, 3) and gt[0].scale[0] / gt[0].scale[1] == pytest.approx(0.75)


def test_ground_truth_boxes_are_cleaned_as_mmpose():
    # inclusive corners (w - 1, h - 1), clipped to a 100x80 image; nothing left -> None
    assert clean_box([10, 20, 30, 40], 100, 80) == [10, 20, 29, 39]
    assert clean_box([-5, 70, 200, 30], 100, 80) == [0, 70, 99, 9]
    assert clean_box([10, 20, 1, 40], 100, 80) is None and clean_box([120, 20, 10, 10], 100, 80) is None


def test_checker(synth, tmp_path):
    out, _ = synth
    assert check_coco_pose(out).ok, check_coco_pose(out).summary()
    bad = tmp_path / "bad"
    write_synthetic_coco_pose(bad, train=2, val=1, size=64, seed=0)
    coco = json.loads(ann_file(bad, "train").read_text())
    coco["annotations"][0]["keypoints"] = coco["annotations"][0]["keypoints"][:-3]
    flags = coco["annotations"][1]["keypoints"]
    flags[next(j for j in range(2, 51, 3) if flags[j] > 0)] = 3  # labelled joint: num_keypoints still agrees
    coco["annotations"][-1]["num_keypoints"] += 1
    coco["annotations"][-1]["bbox"][0] = 500.0
    ann_file(bad, "train").write_text(json.dumps(coco))
    (bad / "val2017" / coco_first_val(bad)).unlink()
    dets = json.loads((bad / DET_FILE).read_text()) + [{"image_id": 999, "category_id": 1, "bbox": [0, 0, 1, 1],
                                                         "score": 1}]
    (bad / DET_FILE).write_text(json.dumps(dets))
    kinds = sorted(p.kind for p in check_coco_pose(bad).problems)
    assert kinds == sorted(["bad_keypoints", "bad_visibility", "num_keypoints_mismatch", "bbox_outside",
                            "missing_image", "unknown_image"]), kinds


def coco_first_val(root):
    return json.loads(ann_file(root, "val").read_text())["images"][0]["file_name"]


def test_keypoint_ap_perfect_and_nms_duplicates(synth):
    out, _ = synth
    coco = json.loads(ann_file(out, "val").read_text())
    results = [{"image_id": a["image_id"], "category_id": 1, "score": 1.0,
                "keypoints": [v if j % 3 < 2 else 1.0 for j, v in enumerate(a["keypoints"])]}
               for a in coco["annotations"] if a["num_keypoints"] > 0]
    assert keypoint_ap(ann_file(out, "val"), results)["AP"] == pytest.approx(1.0)
    # a lower-scored duplicate of the same person is removed by OKS-NMS
    kp = np.array(results[0]["keypoints"]).reshape(17, 3)
    keep = oks_nms(np.stack([kp, kp + [0.5, 0, 0]]), np.array([1.0, 0.5]), np.array([1e4, 1e4]))
    assert keep == [0]


def test_person_box_ap_of_a_detection_file(synth, tmp_path):
    out, _ = synth
    people = [a for a in json.loads(ann_file(out, "val").read_text())["annotations"] if not a.get("iscrowd", 0)]
    exact = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9} for a in people]
    off = [{**d, "bbox": [d["bbox"][0] + 1000, *d["bbox"][1:]]} for d in exact]  # no overlap with any person
    for name, dets, ap in (("exact", exact, 1.0), ("off", off, 0.0), ("other_class", [
            {**d, "category_id": 2} for d in exact], 0.0)):
        (tmp_path / name).write_text(json.dumps(dets))
        assert person_box_ap(ann_file(out, "val"), tmp_path / name) == pytest.approx(ap), name
