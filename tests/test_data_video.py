"""Video data layer: class-index files, Kinetics / Something-Something formats, synthetic writers, sampling,
decoding, multi-view test, skipping of bad videos, the checker CLI and the temporal-task property.

Every file here is generated in the official formats; the official class-index files are not shipped.
"""
import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import timm
import torch

from uniformer.cli import main as cli
from uniformer.workflow import data_commands
from uniformer.config import ConfigError
from uniformer.data.check_video import check_video_dataset
from uniformer.data.kinetics import Kinetics, read_kinetics_annotations, read_kinetics_list, read_kinetics_split
from uniformer.data.loader import build_loader
from uniformer.data.something import SomethingSomething, read_ssv2_json, read_sth_list
from uniformer.data.synth_imagenet import write_synthetic_imagenet
from uniformer.data.synth_out import MANIFEST, MARKER, data_source
from uniformer.data.synth_video import (SSV_CLASSES, render_ssv_video, ssv_positions,
                                        write_synthetic_kinetics, write_synthetic_ssv1, write_synthetic_ssv2)
from uniformer.data.video_augment import (ClipAugment, apply_to_frames, erase_clip, rand_augment_frames,
                                          random_resized_crop, relative_crop_box)
from uniformer.data.video import (VIDEO_MEAN, VIDEO_STD, BadVideoError, ClassIndexError, ClipSpec, ListFormatError,
                                  decode_video, dense_indices, load_video_class_index, normalize_class_name,
                                  require_class_index, segment_indices)
from uniformer.models import video_catalog

SIZE = 48
KIN = dict(classes=4, train_per_class=3, val_per_class=2, frames=24, size=SIZE)
SSV = dict(classes=4, train_per_class=6, val_per_class=2, frames=12, size=SIZE)
DENSE = ClipSpec(num_frames=6, stride=3, crop_size=32, train_scales=(36, 44), temporal_clips=4)
SEGMENT = ClipSpec(num_frames=6, sampling="segment", crop_size=32, train_scales=(36, 44), spatial_crops=3,
                   random_flip=False)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("video")
    write_synthetic_kinetics(base / "kinetics", seed=0, **KIN)
    write_synthetic_ssv2(base / "ssv2", seed=0, **SSV)
    write_synthetic_ssv1(base / "ssv1", seed=0, classes=3, train_per_class=2, val_per_class=1, frames=8, size=32)
    return base


@pytest.fixture
def private_copy(sets, tmp_path):
    """A private copy of one clean set, free to corrupt."""
    return lambda name: Path(shutil.copytree(sets / name, tmp_path / name))


# --- class index ------------------------------------------------------------------------------------------

def test_class_index_official_formats(tmp_path):
    k400 = tmp_path / "k400.txt"  # name<TAB>index, names with spaces, not alphabetical
    k400.write_text("riding a bike\t0\nmarching\t1\npassing American football (in game)\t2\n"
                    "massaging person's head\t3\n")
    assert load_video_class_index(k400) == ["riding a bike", "marching", "passing American football (in game)",
                                            "massaging person's head"]
    common, special = tmp_path / "common.list", tmp_path / "special.list"  # Kinetics-600: two 'name index' lists
    common.write_text("marching 2\nriding_a_bike 0\n")
    special.write_text("massaging_persons_head 1\npassing_American_football_in_game 3\n")
    assert load_video_class_index([common, special]) == ["riding_a_bike", "massaging_persons_head", "marching",
                                                         "passing_American_football_in_game"]
    sthv2 = tmp_path / "sthv2_category.txt"  # one template per line, index = line, no final newline
    sthv2.write_text("Moving [something] up\nMoving [something] down\n[Something] falling like a rock")
    assert load_video_class_index(sthv2)[2] == "[Something] falling like a rock"
    labels = tmp_path / "something-something-v2-labels.json"
    labels.write_text(json.dumps({"Moving something down": "1", "Moving something up": "0"}))
    assert load_video_class_index(labels) == ["Moving something up", "Moving something down"]
    # Names of the same class in different files meet after normalisation.
    assert normalize_class_name("massaging person's head") == normalize_class_name("massaging_persons_head")
    assert normalize_class_name("passing American football (in game)") == \
        normalize_class_name("passing_American_football_in_game")
    assert normalize_class_name("Moving [something] up") == normalize_class_name("Moving something up")


@pytest.mark.parametrize("text, match", [
    ("a\t0\nb\t0\n", "each once"),
    ("a\t0\nb\t2\n", "0..1"),
    ("a\t0\n\nb\t1\n", "empty line"),
    ("a 0\na_ 1\n", "more than once"),
    ("", "empty"),
])
def test_class_index_errors_name_the_file(tmp_path, text, match):
    path = tmp_path / "classes.txt"
    path.write_text(text)
    with pytest.raises(ClassIndexError, match=match) as e:
        load_video_class_index(path)
    assert str(path) in str(e.value)


def test_require_class_index_for_official_checkpoints(tmp_path):
    with pytest.raises(ClassIndexError, match="--class-index.*kinetics_400_categroies") as e:
        require_class_index(None, "ckpt/uniformer_small_k400_16x4.pth")
    assert isinstance(e.value, ConfigError)  # the CLI prints it as an error, not a traceback
    with pytest.raises(ClassIndexError, match="sthv2"):
        require_class_index(None, "uniformer_b16_sthv2_prek600.pth")
    index = tmp_path / "c.txt"
    index.write_text("a\nb\nc")
    assert require_class_index(index, "x_k400.pth", num_classes=3) == ["a", "b", "c"]
    with pytest.raises(ClassIndexError, match="3 classes, but .* predicts 400"):
        require_class_index(index, "x_k400.pth", num_classes=400)


# --- Kinetics formats -------------------------------------------------------------------------------------

def test_kinetics_official_and_slowfast_lists_agree(sets):
    root = sets / "kinetics"
    official = read_kinetics_list(root / "val.csv", root)
    slowfast = read_kinetics_split(root / "slowfast" / "val.csv", root)
    assert [(i.path, i.label) for i in official] == [(i.path, i.label) for i in slowfast]
    assert len(official) == KIN["classes"] * KIN["val_per_class"]
    assert all(Path(i.path).is_file() and i.path.endswith(".mp4") and not i.is_frames for i in official)
    assert sorted({i.label for i in official}) == list(range(KIN["classes"]))


def test_kinetics_list_parsing_details(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("dir with space/a b.mp4 3\nval_videos/x,y/clip.mp4,7\nx,y/z.mp4 8\n\n")
    items = read_kinetics_list(lst, tmp_path)
    assert [(Path(i.path).relative_to(tmp_path).as_posix(), i.label) for i in items] == \
        [("dir with space/a b.mp4", 3), ("val_videos/x,y/clip.mp4", 7), ("x,y/z.mp4", 8)]
    lst.write_text("a.mp4,1\nno_label.mp4\n")
    with pytest.raises(ListFormatError, match=r"list.txt:2: 'no_label.mp4'"):
        read_kinetics_list(lst, tmp_path)
    errors = []
    assert len(read_kinetics_list(lst, tmp_path, errors=errors)) == 1 and errors[0][0].endswith("list.txt:2")


def test_kinetics_annotation_csv_maps_names_through_the_class_index(sets, tmp_path):
    root = sets / "kinetics"
    official = read_kinetics_list(root / "val.csv", root)
    ann = read_kinetics_annotations(root / "annotations" / "val.csv", root, root / "classes.txt")
    assert [(i.path, i.label) for i in ann] == [(i.path, i.label) for i in official]
    # The published class order is not alphabetical; labels follow the class-index file.
    names = load_video_class_index(root / "classes.txt")
    assert names != sorted(names)
    # A Kinetics-600-style index ('name_with_underscores index', another order) relabels the same clips.
    reordered = list(reversed(names))
    k600 = tmp_path / "k600.list"
    k600.write_text("".join(f"{n.replace(' ', '_').replace('(', '').replace(')', '')} {k}\n"
                            for k, n in enumerate(reordered)))
    relabelled = read_kinetics_split(root / "annotations" / "val.csv", root, k600)
    assert [reordered[i.label] for i in relabelled] == [names[i.label] for i in official]
    with pytest.raises(ListFormatError, match="needs a class index"):
        read_kinetics_split(root / "annotations" / "val.csv", root)
    short = tmp_path / "short.txt"
    short.write_text(names[0] + "\n")
    with pytest.raises(ListFormatError, match=r"val.csv:\d+: class .* not in the class index"):
        read_kinetics_annotations(root / "annotations" / "val.csv", root, short)


# --- Something-Something formats --------------------------------------------------------------------------

def test_ssv1_list_over_frame_folders(sets):
    root = sets / "ssv1"
    items = read_sth_list(root / "somesomev1_rgb_validation_split.txt", root)
    assert len(items) == 3
    for it in items:
        assert it.is_frames and Path(it.path).parent == root
        frames = sorted(Path(it.path).iterdir())
        assert [f.name for f in frames] == [f"img_{i:05d}.jpg" for i in range(1, it.num_frames + 1)]
    assert "[" not in (root / "category.txt").read_text()  # V1 templates have no brackets


def test_ssv2_json_and_split_lists(sets, tmp_path):
    root = sets / "ssv2"
    # JSON labels come from the labels JSON (alphabetical numbering) unless a class index is given.
    by_json = read_ssv2_json(root / "something-something-v2-validation.json", root)
    labels = load_video_class_index(root / "something-something-v2-labels.json")
    assert labels == sorted(labels)
    by_index = read_ssv2_json(root / "something-something-v2-validation.json", root, root / "category.txt")
    listed = read_sth_list(root / "somesomev2_rgb_validation_split.txt", root)
    ids = lambda items: [Path(i.path).name.removesuffix(".webm") for i in items]  # noqa: E731
    assert ids(by_json) == ids(listed)
    assert [i.label for i in by_index] == [i.label for i in listed]  # category.txt order = the split lists'
    category = load_video_class_index(root / "category.txt")
    assert [normalize_class_name(labels[a.label]) for a in by_json] == \
        [normalize_class_name(category[b.label]) for b in by_index]
    assert all(i.path.endswith(".webm") and Path(i.path).is_file() for i in by_json)
    lonely = tmp_path / "something-something-v2-validation.json"
    shutil.copy(root / "something-something-v2-validation.json", lonely)
    with pytest.raises(ListFormatError, match="labels JSON"):
        read_ssv2_json(lonely, root)
    bad = tmp_path / "list.txt"
    bad.write_text("123 10 4\n124 ten 4\n")
    with pytest.raises(ListFormatError, match=r"list.txt:2"):
        read_sth_list(bad, root)


# --- synthetic writers ------------------------------------------------------------------------------------

def test_synth_is_deterministic_per_seed(tmp_path):
    small = dict(classes=2, train_per_class=1, val_per_class=1, frames=6, size=32)
    for write in (write_synthetic_kinetics, write_synthetic_ssv2, write_synthetic_ssv1):
        a = write(tmp_path / "a", seed=3, **small)
        b = write(tmp_path / "b", seed=3, **small)
        c = write(tmp_path / "c", seed=4, **small)
        assert a["sha256"] == b["sha256"] != c["sha256"], write.__name__
        assert all((tmp_path / "a" / f["path"]).read_bytes() == (tmp_path / "b" / f["path"]).read_bytes()
                   for f in a["files"])
        on_disk = json.loads((tmp_path / "a" / "manifest.json").read_text())
        assert on_disk["sha256"] == a["sha256"]
        for d in "abc":
            shutil.rmtree(tmp_path / d)


SMALL_SETS = ("imagenet", "kinetics", "ssv2", "ssv1")  # in this order, x264 runs first in a fresh process


def _synth_argv(base: Path) -> list:
    """``uniformer data synth`` argument lists writing one small set of every writer under ``base``."""
    small = ["--classes", "2", "--train-per-class", "1", "--val-per-class", "1", "--size", "32", "--seed", "3"]
    return [["data", "synth", name, "--out", str(base / name), *small, *([] if name == "imagenet" else
                                                                         ["--frames", "6"])] for name in SMALL_SETS]


def _manifest_hashes(base: Path) -> dict:
    return {name: json.loads((base / name / "manifest.json").read_text())["sha256"] for name in SMALL_SETS}


def test_synth_is_byte_identical_whatever_ran_before(tmp_path, capsys):
    # A fresh process whose heap glibc fills with a byte pattern (MALLOC_PERTURB_): an encoder reading
    # uninitialised memory (x264's AVX-512 mbtree code did) writes other bytes there than in this process.
    env = dict(os.environ, MALLOC_PERTURB_="165", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="7")
    code = "import json, sys; from uniformer.cli import main; [main(a) for a in json.loads(sys.argv[1])]"
    subprocess.run([sys.executable, "-c", code, json.dumps(_synth_argv(tmp_path / "fresh"))], env=env, check=True)
    # This process, with global state changed: thread count, seeded global RNGs, the writers in reverse order
    # (a VP9 encode right before the x264 one), each set written twice.
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    try:
        for _ in range(2):
            assert all(cli(argv) == 0 for argv in reversed(_synth_argv(tmp_path / "here")))
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    assert _manifest_hashes(tmp_path / "here") == _manifest_hashes(tmp_path / "fresh")


def test_synth_writes_real_containers(sets):
    kin = json.loads((sets / "kinetics" / "manifest.json").read_text())
    mp4 = [f["path"] for f in kin["files"] if f["path"].endswith(".mp4")]
    assert len(mp4) == KIN["classes"] * (KIN["train_per_class"] + KIN["val_per_class"])
    with av.open(str(sets / "kinetics" / mp4[0])) as c:
        assert c.format.name.startswith("mov,mp4") and c.streams.video[0].codec_context.name == "h264"
    ssv2 = json.loads((sets / "ssv2" / "manifest.json").read_text())
    webm = [f["path"] for f in ssv2["files"] if f["path"].endswith(".webm")]
    with av.open(str(sets / "ssv2" / webm[0])) as c:
        assert "webm" in c.format.name and c.streams.video[0].codec_context.name == "vp9"
    assert {f["path"] for f in ssv2["files"]} >= {"something-something-v2-labels.json", "category.txt",
                                                  "something-something-v2-train.json",
                                                  "somesomev2_rgb_validation_split.txt"}


def test_cli_synth_and_refuses_foreign_folder(tmp_path, capsys):
    assert cli(["data", "synth", "ssv1", "--out", str(tmp_path / "s"), "--classes", "2", "--train-per-class", "1",
                "--val-per-class", "1", "--frames", "4", "--size", "32"]) == 0
    assert "sha256" in capsys.readouterr().out
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert cli(["data", "synth", "kinetics", "--out", str(foreign), "--classes", "2"]) == 2
    assert (foreign / "keep.txt").exists()
    # a set of ours whose manifest is gone (Snakemake removes it before a re-run) is rewritten
    ours = tmp_path / "ours"
    write_synthetic_ssv1(ours, classes=2, train_per_class=1, val_per_class=1, frames=4, size=32, seed=0)
    (ours / "manifest.json").unlink()
    assert cli(["data", "synth", "ssv1", "--out", str(ours), "--classes", "2", "--train-per-class", "1",
                "--val-per-class", "1", "--frames", "4", "--size", "32"]) == 0
    assert (ours / "manifest.json").is_file()


def test_data_source_comes_from_the_data(sets, private_copy, tmp_path):
    assert data_source(sets / "kinetics") == "synthetic (kinetics-synthetic, seed 0)"
    assert data_source(sets / "ssv1") == "synthetic (ssv1-synthetic, seed 0)"
    write_synthetic_imagenet(tmp_path / "imagenet", 2, 1, 0, 16, seed=5)
    assert data_source(tmp_path / "imagenet") == "synthetic (imagenet-synthetic, seed 5)"
    # a write that has not finished yet: only the marker
    unfinished = private_copy("ssv2")
    (unfinished / MANIFEST).unlink()
    assert data_source(unfinished) == "synthetic (uniformer.data.synth_video, unfinished)"
    # the user's own set in the same format (here: the files without our marker and manifest) is real,
    # whichever profile trains on it; so is a folder with someone else's manifest.json
    (unfinished / MARKER).unlink()
    assert data_source(unfinished) == "real"
    (unfinished / MANIFEST).write_text(json.dumps({"generator": "their_tool", "params": {"seed": 0}}))
    assert data_source(unfinished) == "real" and data_source(tmp_path / "nowhere") == "real"


# --- sampling ---------------------------------------------------------------------------------------------

def test_dense_indices_follow_slowfast():
    # 100 frames, 8 x 4: span 32, slack 68; test clip k of 4 starts at 68 * k / 4.
    for k in range(4):
        start = 68 * k / 4
        assert dense_indices(100, 8, 4, k, 4).tolist() == torch.linspace(start, start + 31, 8).long().tolist()
    assert dense_indices(100, 8, 4, None).tolist()[0] == 34  # centre clip
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        idx = dense_indices(100, 8, 4, -1, generator=g)
        assert len(idx) == 8 and 0 <= idx[0] <= 68 and np.all(np.diff(idx) >= 3)
    assert dense_indices(10, 8, 4, 0, 4).tolist() == [0, 4, 8, 9, 9, 9, 9, 9]  # short video: clamped
    # USE_OFFSET_SAMPLING (every dense Kinetics config): clip k starts at k * floor(68 / 3), last one at the end
    assert [dense_indices(100, 8, 4, k, 4, use_offset=True)[0] for k in range(4)] == [0, 22, 44, 66]
    assert dense_indices(100, 8, 4, 0, 1, use_offset=True)[0] == 34
    # Stride counted at 30 fps: a 15 fps video covers half as many source frames.
    assert dense_indices(100, 8, 4, None, fps=15, target_fps=30).tolist()[-1] - \
        dense_indices(100, 8, 4, None, fps=15, target_fps=30).tolist()[0] == 15


def test_segment_indices_follow_the_sth_loader():
    n, t = 41, 8  # segments of 40 / 8 = 5 frames
    bounds = [(int(np.round(5 * i)), int(np.round(5 * (i + 1)))) for i in range(t)]
    assert segment_indices(n, t, None).tolist() == [a + 2 for a, _ in bounds]  # centre of each segment
    assert segment_indices(n, t, 1, 2).tolist() == [a + int(5 / 3 * 2) for a, _ in bounds]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        idx = segment_indices(n, t, -1, generator=g)
        assert all(a <= i <= b for i, (a, b) in zip(idx, bounds))
    assert len(segment_indices(3, 8, None)) == 8 and segment_indices(3, 8, -1).max() <= 2  # fewer frames than T


def test_clip_spec_from_published_cfgs():
    k400 = ClipSpec.from_pretrained_cfg(timm.models.get_pretrained_cfg("uniformer_small_video.k400_16x4"))
    assert (k400.sampling, k400.num_frames, k400.stride, k400.crop_size) == ("dense", 16, 4, 224)
    assert (k400.temporal_clips, k400.spatial_crops, k400.num_views, k400.random_flip) == (4, 1, 4, True)
    assert (k400.use_offset, k400.target_fps) == (True, None)  # USE_OFFSET_SAMPLING, decord (no fps resampling)
    ssv = ClipSpec.from_pretrained_cfg(timm.models.get_pretrained_cfg("uniformer_small_video.ssv2_16f_from_k400"))
    assert (ssv.sampling, ssv.num_frames, ssv.temporal_clips, ssv.spatial_crops, ssv.random_flip) == \
        ("segment", 16, 1, 3, False)
    light = ClipSpec.from_pretrained_cfg(timm.models.get_pretrained_cfg("uniformer_xxs_ls_video.k400_4f_128"))
    assert (light.sampling, light.num_frames, light.crop_size, light.num_views, light.random_flip) == \
        ("segment", 4, 128, 1, True)
    with pytest.raises(ValueError, match="train_scales"):
        replace(k400, train_scales=(200, 256))
    with pytest.raises(ValueError, match="spatial_crops"):
        replace(k400, spatial_crops=2)
    assert (VIDEO_MEAN, VIDEO_STD) == (video_catalog.VIDEO_MEAN, video_catalog.VIDEO_STD) == \
        (k400.mean, k400.std) == ((0.45,) * 3, (0.225,) * 3)


# --- decoding and views -----------------------------------------------------------------------------------

def test_dense_clips_shapes_and_normalisation(sets):
    root = sets / "kinetics"
    index = root / "classes.txt"
    train = Kinetics(root, root / "train.csv", DENSE, "train", class_index=index)
    clip, label = train[0]
    assert clip.shape == (3, 6, 32, 32) and clip.dtype == torch.float32 and label == train.items[0].label
    views, _ = Kinetics(root, root / "val.csv", DENSE, "test", class_index=index)[0]
    assert views.shape == (4, 3, 6, 32, 32)  # 4 clips x 1 crop
    assert not torch.equal(views[0], views[3])  # different temporal clips
    # No resize (short side = crop = frame size): val output is exactly (frames / 255 - 0.45) / 0.225.
    same = replace(DENSE, crop_size=SIZE, train_scales=(SIZE, SIZE))
    ds = Kinetics(root, root / "val.csv", same, "val", class_index=index)
    clip, _ = ds[1]
    video = decode_video(ds.items[1].path)
    raw = video.rgb(dense_indices(len(video), 6, 3, None))  # stride in file frames (official decord backend)
    expected = (torch.from_numpy(raw).permute(3, 0, 1, 2).float() / 255 - 0.45) / 0.225
    torch.testing.assert_close(clip, expected)
    # Decoding stops once the planned clips are covered (frame count from the mp4 header).
    part = decode_video(ds.items[1].path, plan=lambda header_frames, fps: 5)
    assert (len(part), part.header_frames, part.complete, len(video)) == (6, KIN["frames"], False, KIN["frames"])


def test_segment_clips_from_frames_and_webm(sets):
    ssv1 = sets / "ssv1"
    clip, _ = SomethingSomething(ssv1, ssv1 / "somesomev1_rgb_train_split.txt", SEGMENT, "train")[0]
    assert clip.shape == (3, 6, 32, 32)
    ssv2 = sets / "ssv2"
    wide = replace(SEGMENT, test_scale=40)  # the frames are square: scaled up so that the 3 crops differ
    for lst in ("something-something-v2-validation.json", "somesomev2_rgb_validation_split.txt"):
        ds = SomethingSomething(ssv2, ssv2 / lst, wide, "test", class_index=ssv2 / "category.txt")
        views, _ = ds[0]
        assert views.shape == (3, 3, 6, 32, 32)  # 1 clip x 3 crops (left, centre, right)
        assert not torch.equal(views[0], views[1]) and not torch.equal(views[1], views[2])
        centre, _ = SomethingSomething(ssv2, ssv2 / lst, wide, "val", class_index=ssv2 / "category.txt")[0]
        torch.testing.assert_close(views[1], centre)  # view v = (clip v // 3, crop v % 3); val = centre view
    two_clips = replace(SEGMENT, temporal_clips=2)
    views, _ = SomethingSomething(ssv2, ssv2 / "somesomev2_rgb_validation_split.txt", two_clips, "test")[0]
    assert views.shape == (6, 3, 6, 32, 32)


# --- training augmentation (the official _aug_frame) --------------------------------------------------------

def test_rand_augment_is_one_draw_per_clip():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    clip = np.stack([frame] * 5)
    aug = ClipAugment(rand_augment="rand-m9-n4-mstd0.5-inc1")
    changed = 0
    for seed in range(6):
        torch.manual_seed(seed), np.random.seed(seed), __import__("random").seed(seed)
        out = rand_augment_frames(clip, aug)
        assert out.shape == clip.shape and out.dtype == np.uint8
        assert all(np.array_equal(out[0], out[t]) for t in range(1, 5))  # same ops, same magnitudes
        changed += not np.array_equal(out[0], frame)
    assert changed >= 5  # 4 ops at magnitude ~9 change the frame
    # the replay helper: each frame sees the same draws, and the RNG moves on after the clip
    import random
    draws = apply_to_frames(lambda _: (random.random(), float(np.random.rand())), range(3))
    assert draws[0] == draws[1] == draws[2] and apply_to_frames(lambda _: random.random(), [0])[0] != draws[0][0]


def test_relative_area_crop_box_and_one_box_for_all_frames():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = relative_crop_box(120, 160, (0.08, 1.0), (0.75, 1.3333), g)
        assert 0 <= top <= 120 - h and 0 <= left <= 160 - w
        assert 0.07 <= h * w / (120 * 160) <= 1.0 and 0.7 <= w / h <= 1.4
    # impossible aspect range: the fallback is the centre crop clamped to the range (SlowFast)
    assert relative_crop_box(100, 100, (0.5, 1.0), (3.0, 4.0), g) == (33, 0, 33, 100)
    base = torch.rand(1, 3, 60, 80)
    frames = base + torch.arange(4.0).view(4, 1, 1, 1)  # frame t = frame 0 + t
    out = random_resized_crop(frames, 32, (0.08, 1.0), (0.75, 1.3333), torch.Generator().manual_seed(1))
    assert out.shape == (4, 3, 32, 32)
    torch.testing.assert_close(out - out[:1], torch.arange(4.0).view(4, 1, 1, 1).expand_as(out))  # same box


def test_random_erasing_is_one_box_through_every_frame():
    random = __import__("random")
    random.seed(0)
    for _ in range(10):
        clip = erase_clip(torch.zeros(3, 4, 40, 40), ClipAugment(reprob=1.0))
        mask = clip != 0
        assert torch.equal(mask, mask[:1, :1].expand_as(mask))  # the same box in every channel and frame
        share = mask[0, 0].float().mean().item()
        assert 0.015 <= share <= 1 / 3 + 0.01
        assert not torch.equal(clip[:, 0], clip[:, 1])  # per-pixel noise ('pixel' mode), not a copied frame
    assert torch.count_nonzero(erase_clip(torch.zeros(3, 2, 16, 16), ClipAugment(reprob=0.0))) == 0


def test_repeated_samples_and_recipe_augment(sets):
    root = sets / "kinetics"
    aug = ClipAugment(rand_augment="rand-m7-n4-mstd0.5-inc1", scale=(0.08, 1.0), reprob=0.25, num_sample=2)
    ds = Kinetics(root, root / "train.csv", DENSE, "train", class_index=root / "classes.txt", augment=aug)
    clips, label = ds[0]
    assert clips.shape == (2, 3, 6, 32, 32) and not torch.equal(clips[0], clips[1])  # 2 augmentations, 1 decode
    samples, targets, _ = next(iter(build_loader(ds, 2, False, 0, seed=0)))
    assert samples.shape == (2, 2, 3, 6, 32, 32) and targets.tolist() == [ds.items[0].label, ds.items[1].label]
    val = Kinetics(root, root / "val.csv", DENSE, "val", class_index=root / "classes.txt", augment=aug)
    assert val[0][0].shape == (3, 6, 32, 32)  # augmentation is for training only
    assert ClipAugment.from_cfg({"scale": [0.08, 1], "num_sample": None}) == ClipAugment(scale=(0.08, 1.0))
    with pytest.raises(ConfigError, match="unknown key"):
        ClipAugment.from_cfg({"rand_aug": "rand"})
    with pytest.raises(ConfigError, match="aug.scale"):
        ClipAugment.from_cfg({"scale": [0.5, 2.0]})
    with pytest.raises(ConfigError, match="rand_augment"):
        ClipAugment.from_cfg({"rand_augment": "v0"})


def test_loader_batches_all_views(sets):
    root = sets / "ssv2"
    ds = SomethingSomething(root, root / "something-something-v2-validation.json", SEGMENT, "test",
                            class_index=root / "category.txt")
    batches = list(build_loader(ds, 4, False, 0, seed=0))
    assert batches[0][0].shape == (4, 3, 3, 6, 32, 32)
    assert sum(len(b[1]) for b in batches) == len(ds) and sum(b[2] for b in batches) == 0


# --- bad videos -------------------------------------------------------------------------------------------

def _zero_frame_video(path: Path) -> None:
    """A valid container with a video stream but not a single frame (AVI keeps such a stream; FFmpeg probes
    the content, so the .mp4 name does not matter)."""
    with av.open(str(path), "w", format="avi") as out:
        s = out.add_stream("mpeg4", rate=12)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        out.start_encoding()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_videos_are_skipped_and_counted(private_copy, caplog, num_workers):
    root = private_copy("kinetics")
    items = read_kinetics_list(root / "train.csv", root)
    Path(items[1].path).write_bytes(b"\x00not a video" * 50)  # unreadable
    _zero_frame_video(Path(items[4].path))  # a valid container without a single frame
    with pytest.raises(BadVideoError):
        decode_video(items[4].path)
    ds = Kinetics(root, root / "train.csv", DENSE, "train", class_index=root / "classes.txt")
    batches = list(build_loader(ds, 4, False, num_workers, seed=0))
    assert sum(b[2] for b in batches) == 2 and sum(len(b[1]) for b in batches) == len(items)
    assert all(b[0].shape[1:] == (3, 6, 32, 32) for b in batches)
    if num_workers == 0:  # bad_files and the log live in the process that decoded
        assert sorted(ds.bad_files) == sorted([items[1].path, items[4].path])
        assert "skipping bad video" in caplog.text


def test_bad_frame_folder_is_skipped(private_copy):
    root = private_copy("ssv1")
    items = read_sth_list(root / "somesomev1_rgb_train_split.txt", root)
    for f in Path(items[0].path).glob("*.jpg"):
        f.unlink()
    Path(items[2].frame_path(3)).write_bytes(b"garbage")
    ds = SomethingSomething(root, root / "somesomev1_rgb_train_split.txt",
                            replace(SEGMENT, num_frames=8), "val")
    oks = [ds.get_checked(i)[2] for i in range(len(ds))]
    assert oks.count(False) == 2 and len(ds.bad_files) == 2


# --- checker ----------------------------------------------------------------------------------------------

def test_check_passes_on_clean_sets(sets, capsys):
    assert cli(["data", "check", "kinetics400", "--root", str(sets / "kinetics"),
                "--class-index", str(sets / "kinetics" / "classes.txt")]) == 0
    assert cli(["data", "check", "ssv2", "--root", str(sets / "ssv2"),
                "--class-index", str(sets / "ssv2" / "category.txt")]) == 0
    assert cli(["data", "check", "ssv1", "--root", str(sets / "ssv1")]) == 0
    out = capsys.readouterr().out
    assert out.count(" OK (") == 3


def test_check_takes_several_lists(sets, capsys):
    kin, ssv2 = sets / "kinetics", sets / "ssv2"
    # several files after one --list (the README's form)
    assert cli(["data", "check", "kinetics400", "--root", str(kin), "--list", str(kin / "train.csv"),
                str(kin / "val.csv"), "--class-index", str(kin / "classes.txt")]) == 0
    # --list repeated (the pipeline's form: the argv `uniformer stage data` runs), here SSV2's split list and JSON
    check = data_commands("ssv2", {"root": str(ssv2), "train_list": "somesomev2_rgb_train_split.txt",
                                   "val_list": "something-something-v2-validation.json",
                                   "class_index": "category.txt"})[-1]
    assert check[0] == "uniformer" and check.count("--list") == 2 and cli(check[1:]) == 0
    out = capsys.readouterr().out.splitlines()
    n = KIN["classes"]
    assert out == [f"{kin}: kinetics400 OK (train.csv: {n * KIN['train_per_class']} videos, val.csv: "
                   f"{n * KIN['val_per_class']} videos; {n} classes (class index {kin / 'classes.txt'}))",
                   f"{ssv2}: ssv2 OK (somesomev2_rgb_train_split.txt: {SSV['classes'] * SSV['train_per_class']} "
                   f"videos, something-something-v2-validation.json: {SSV['classes'] * SSV['val_per_class']} videos; "
                   f"{SSV['classes']} classes (class index {ssv2 / 'category.txt'}))"]
    # a second list that does not exist: named, the first one still checked, exit 1
    missing = kin / "no_such_list.csv"
    assert cli(["data", "check", "kinetics400", "--root", str(kin), "--list", str(kin / "val.csv"),
                str(missing)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{missing}: list file not found"
    assert "1 problem(s) (1 missing list)" in out[-1] and f"(val.csv: {n * KIN['val_per_class']} videos;" in out[-1]


def test_check_names_every_problem(private_copy, capsys):
    root = private_copy("kinetics")
    items = read_kinetics_list(root / "val.csv", root)
    Path(items[0].path).write_bytes(b"junk" * 100)  # unreadable
    Path(items[1].path).unlink()  # missing
    data = Path(items[2].path).read_bytes()
    Path(items[2].path).write_bytes(data[: len(data) // 3])  # truncated mp4: no index, unreadable
    _zero_frame_video(Path(items[3].path))  # zero frames
    lines = (root / "val.csv").read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ",9"  # label outside the 4-class index
    (root / "val.csv").write_text("\n".join(lines + ["broken line without label"]) + "\n")
    rc = cli(["data", "check", "kinetics600", "--root", str(root), "--list", str(root / "val.csv"),
              "--class-index", str(root / "classes.txt")])
    out = capsys.readouterr().out
    assert rc == 1
    for path, kind in ((items[0].path, "cannot be decoded"), (items[1].path, "does not exist"),
                       (items[2].path, "cannot be decoded"), (items[3].path, "zero frames"),
                       (items[4].path, "label 9")):
        assert any(line.startswith(path) and kind in line for line in out.splitlines()), (path, kind, out)
    assert "val.csv:9: 'broken line without label'" in out
    assert "6 problem(s)" in out.splitlines()[-1]


def test_check_frames_and_json(private_copy, capsys):
    root = private_copy("ssv2")
    items = read_sth_list(root / "somesomev2_rgb_train_split.txt", root)
    Path(items[0].frame_path(2)).unlink()
    entries = json.loads((root / "something-something-v2-validation.json").read_text())
    entries[1]["template"] = "Juggling [something]"
    (root / "something-something-v2-validation.json").write_text(json.dumps(entries))
    webm = json.loads((root / "something-something-v2-train.json").read_text())[5]["id"]
    data = (root / f"{webm}.webm").read_bytes()
    (root / f"{webm}.webm").write_bytes(data[: len(data) // 2])  # decodes, but to too few frames
    assert cli(["data", "check", "ssv2", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"{items[0].frame_path(2)}: frame 3 of" in out
    assert "something-something-v2-validation.json[1]: id" in out and "Juggling" in out
    assert f"{webm}.webm: decodes to" in out
    report = check_video_dataset("ssv1", root / "nowhere")
    assert not report.ok and report.problems[0].kind == "missing root"


# --- the synthetic Something-Something is a temporal task -------------------------------------------------

def test_ssv_classes_are_permutations_of_the_same_frames():
    n = 13
    videos = [render_ssv_video(k, n, 32, np.random.default_rng(7)) for k in range(len(SSV_CLASSES))]
    for k, v in enumerate(videos):
        assert sorted(ssv_positions(k, n).tolist()) == list(range(n))
        np.testing.assert_array_equal(v, videos[0][ssv_positions(k, n)])  # same frames, class-specific order
    np.testing.assert_array_equal(videos[1], videos[0][::-1])


def _object_x(frames: np.ndarray) -> np.ndarray:
    """Per frame: horizontal position of the saturated object as an angle on the wrapped width (circular mean)."""
    f = frames.astype(np.float32)
    mask = (f.max(-1) - f.min(-1)) > 85  # the object is saturated, the background is dull
    w = mask.sum(1)  # (T, W)
    theta = 2 * np.pi * np.arange(frames.shape[2]) / frames.shape[2]
    return np.angle((w * np.exp(1j * theta)).sum(-1))


def _order_feature(frames: np.ndarray) -> int:
    """Order-aware class guess: signs of the motion in the first and second half of the clip."""
    x = np.unwrap(_object_x(frames))
    h = len(x) // 2
    first, second = x[h] - x[0], x[-1] - x[h]
    return {(True, True): 0, (False, False): 1, (True, False): 2, (False, True): 3}[(first > 0, second > 0)]


def test_synthetic_ssv2_needs_frame_order(sets):
    root = sets / "ssv2"
    items = read_ssv2_json(root / "something-something-v2-train.json", root)
    manifest = json.loads((root / "manifest.json").read_text())
    order = {c["labels_json_index"]: [o for _, o in SSV_CLASSES].index(c["order"]) for c in manifest["classes"]}
    kinds = np.array([order[i.label] for i in items])
    videos = [(lambda v: v.rgb(range(len(v))))(decode_video(i.path)) for i in items]
    rng = np.random.default_rng(0)
    in_order = np.mean([_order_feature(v) == k for v, k in zip(videos, kinds)])
    shuffled = np.mean([_order_feature(v[rng.permutation(len(v))]) == k for v, k in zip(videos, kinds)])
    assert in_order >= 0.95 and shuffled <= 0.5, (in_order, shuffled)  # chance: 0.25

    # Frame-order-free statistics do not separate "left to right" from "right to left" (permutation tests of
    # the per-video mean image and of the object's mean position), the direction of motion does.
    sel = np.isin(kinds, [0, 1])
    y = kinds[sel]
    pair = [v for v, s in zip(videos, sel) if s]
    mean_image = np.stack([v.mean(0).ravel() for v in pair])
    mean_position = np.stack([np.exp(1j * _object_x(v)).mean() for v in pair])[:, None]  # circular
    slope = np.array([np.polyfit(np.arange(len(v)), np.unwrap(_object_x(v)), 1)[0] for v in pair])[:, None]

    def p_value(feature):  # how often a random relabelling separates the class means as much
        stat = lambda lab: np.abs(feature[lab == 0].mean(0) - feature[lab == 1].mean(0)).sum()  # noqa: E731
        return np.mean([stat(rng.permutation(y)) >= stat(y) for _ in range(400)])
    assert p_value(mean_image) > 0.01 and p_value(mean_position) > 0.01
    assert p_value(slope) < 0.01 and np.all(slope[y == 0] > 0) and np.all(slope[y == 1] < 0)
