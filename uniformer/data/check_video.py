"""Validate a video data set (Kinetics-400/600, Something-Something V1/V2) before spending GPU hours on it.

Finds, naming each item: list lines that do not parse, class names / templates missing from the class
index, labels outside the class index (or outside 0..399 / 599 / 173 without one), video files or frame
folders named in a list but missing, videos that cannot be decoded, have no video stream or zero
frames, videos that decode to far fewer frames than their header promises (truncated), and missing or
undecodable frame files of a frame folder.

Without ``--list`` the lists are looked for in the root: ``{train,val,test}.csv`` (Kinetics),
``somesomev{1,2}_rgb_{train,validation}_split.txt`` and, for V2,
``something-something-v2-{train,validation}.json``.
"""
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from ..reference import VIDEO_DATASETS
from .check import Findings
from .images import BadImageError, open_image
from .kinetics import is_annotation_csv, read_kinetics_split
from .something import read_something_split
from .video import FRAME_TEMPLATE, ClassIndexError, ListFormatError, VideoItem, load_video_class_index

TRUNCATED_RATIO = 0.75  # decoded frames below this fraction of the header's count: truncated


def _short(path: str, root: str) -> str:
    try:
        return os.fspath(Path(path).relative_to(root))
    except ValueError:
        return path


@dataclass
class VideoReport(Findings):
    root: str
    dataset: str
    problems: list = field(default_factory=list)
    lists: dict = field(default_factory=dict)  # list file -> number of items read
    num_classes: Optional[int] = None
    class_source: str = ""

    def summary(self) -> str:
        sizes = ", ".join(f"{_short(k, self.root)}: {n} videos" for k, n in self.lists.items()) or "no lists"
        return self._summary(f"{sizes}; {self.num_classes} classes ({self.class_source})", self.dataset)


def default_lists(dataset: str, root: Path) -> List[Path]:
    if dataset.startswith("kinetics"):
        names = ["train.csv", "val.csv", "test.csv"]
    else:
        v = dataset[-1]
        names = [f"somesomev{v}_rgb_{s}_split.txt" for s in ("train", "validation")]
        if v == "2":
            names += [f"something-something-v2-{s}.json" for s in ("train", "validation")]
    return [root / n for n in names if (root / n).is_file()]


def _video_problems(path: str) -> list:
    """``[(kind, message)]`` of one video file: decodes every frame (module-level: runs in worker processes)."""
    import av  # lazy: PyAV only when a video is read (keeps `uniformer --help` and the image checks from loading it)

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return [("unreadable video", "no video stream")]
            stream = container.streams.video[0]
            n = sum(1 for _ in container.decode(stream))
            rate = float(stream.average_rate) if stream.average_rate else None
            if stream.duration is not None and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = container.duration / 1e6 if container.duration else None
    except Exception as e:  # av.FFmpegError and friends
        return [("unreadable video", f"cannot be decoded ({type(e).__name__}: {e}); re-download or delete it")]
    if n == 0:
        return [("zero frames", "decodes to zero frames; re-download or delete it")]
    expected = round(seconds * rate) if seconds and rate else None
    if expected and n < TRUNCATED_RATIO * expected - 1:
        return [("truncated video", f"decodes to {n} frames but its header says {seconds:.2f} s at {rate:g} fps "
                                    f"(~{expected} frames); re-download it")]
    return []


def _frames_problems(item: VideoItem) -> list:
    """``[(path, kind, message)]`` of one frame folder: every listed frame must exist and decode."""
    if item.num_frames < 1:
        return [(item.path, "zero frames", f"listed with {item.num_frames} frames ({item.source})")]
    out = []
    for i in range(item.num_frames):
        p = item.frame_path(i)
        if not os.path.isfile(p):
            out.append((p, "missing frame", f"frame {i + 1} of {item.num_frames} listed ({item.source}) is missing"))
            continue
        try:
            open_image(p)
        except BadImageError as e:
            out.append((p, "bad frame", str(e).removeprefix(f"{p}: ")))
    if out and all(k == "missing frame" for _, k, _ in out) and len(out) > 3:
        first = out[0][0]
        return [(item.path, "missing frame", f"{len(out)} of {item.num_frames} listed frames are missing "
                                              f"(first: {os.path.basename(first)}; {item.source}); is the frame "
                                              f"template right (--frame-template, now {item.frame_template!r})?")]
    return out


def _item_problems(item: VideoItem) -> list:
    if item.is_frames:
        return _frames_problems(item)
    return [(item.path, kind, msg) for kind, msg in _video_problems(item.path)]


def _read_list(dataset: str, path: Path, root: Path, classes, labels, frame_template: str, errors: list):
    if dataset.startswith("kinetics"):
        if classes is None and is_annotation_csv(path):
            raise ClassIndexError("a Kinetics annotation CSV names its classes, so it needs a class index "
                                  "(--class-index FILE, e.g. the official kinetics_400_categroies.txt) to map "
                                  "them to labels")
        return read_kinetics_split(path, root, classes, errors=errors)

    if path.suffix.lower() == ".json" and dataset != "ssv2":
        raise ListFormatError(f"{path}: JSON split files exist only for Something-Something V2")
    return read_something_split(path, root, classes, labels, frame_template, errors=errors)


def check_video_dataset(dataset: str, root: os.PathLike, lists: Optional[Sequence[os.PathLike]] = None,
                        class_index=None, labels: Optional[os.PathLike] = None,
                        frame_template: str = FRAME_TEMPLATE, workers: int = 0) -> VideoReport:
    """Check the lists of ``dataset`` (one of ``VIDEO_DATASETS``) over ``root``; decode every video (in
    ``workers`` processes if > 0). ``class_index``: class-index file(s) fixing names and label range."""
    if dataset not in VIDEO_DATASETS:
        raise ValueError(f"dataset={dataset!r}; expected one of {tuple(VIDEO_DATASETS)}")
    root = Path(root)
    report = VideoReport(os.fspath(root), dataset, num_classes=VIDEO_DATASETS[dataset].num_classes,
                         class_source=f"the {dataset} default; pass --class-index to check names and range")
    if not root.is_dir():
        report.add(root, "missing root", "no such folder")
        return report
    classes = None
    if class_index is not None:
        try:
            classes = load_video_class_index(class_index)
            report.num_classes = len(classes)
            report.class_source = "class index " + ", ".join(
                map(os.fspath, [class_index] if isinstance(class_index, (str, os.PathLike)) else class_index))
        except ClassIndexError as e:
            report.add(str(class_index), "class index", str(e))
            return report
    list_paths = [Path(p) for p in lists] if lists else default_lists(dataset, root)
    if not list_paths:
        report.add(root, "missing list", "no split list found in the root; pass --list FILE (e.g. the official "
                                         "train.csv / somesomev2_rgb_validation_split.txt)")
        return report
    items = []
    for lp in list_paths:
        if not lp.is_file():
            report.add(lp, "missing list", "list file not found")
            continue
        errors: list = []
        try:
            got = _read_list(dataset, lp, root, classes, labels, frame_template, errors)
        except ClassIndexError as e:
            report.add(lp, "class index", str(e))
            continue
        except ListFormatError as e:
            report.add(lp, "bad list", str(e))
            continue
        except UnicodeDecodeError as e:
            report.add(lp, "bad list", f"not a text file ({e})")
            continue
        for where, message in errors:
            report.add(where, "bad list line", message)
        report.lists[os.fspath(lp)] = len(got)
        items += got
    for it in items:
        if not 0 <= it.label < report.num_classes:
            report.add(it.path, "label out of range",
                       f"label {it.label} ({it.source}) outside 0..{report.num_classes - 1} ({report.class_source})")
    present, seen = [], set()
    for it in items:
        if it.path in seen:
            continue
        seen.add(it.path)
        if it.is_frames and not os.path.isdir(it.path):
            report.add(it.path, "missing folder", f"frame folder named in {it.source} does not exist")
        elif not it.is_frames and not os.path.isfile(it.path):
            report.add(it.path, "missing file", f"video named in {it.source} does not exist")
        else:
            present.append(it)
    if workers > 0:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_item_problems, present, chunksize=16))
    else:
        results = [_item_problems(it) for it in present]
    for found in results:
        for path, kind, message in found:
            report.add(path, kind, message)
    return report
