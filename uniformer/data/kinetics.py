"""Kinetics-400 / 600: the split-list formats the official code reads, and the data set's own annotation CSV.

Formats (paths relative to a root folder; one video per line)::

    val_videos/feeding_fish/45nH4ftrpcQ_000000_000010.mp4,0      official data_list train.csv / val.csv
    val_videos/feeding_fish/45nH4ftrpcQ_000000_000010.mp4 0      PySlowFast's generic form (space)

    label,youtube_id,time_start,time_end,split                    the Kinetics annotation CSV (with header)
    feeding fish,45nH4ftrpcQ,0,10,val

The annotation CSV names classes, so it needs a class index (``video.load_video_class_index``: the
official ``kinetics_400_categroies.txt`` or the two Kinetics-600 lists) to map names to labels; names
are matched after ``normalize_class_name`` (case, spaces/underscores, punctuation). Its clips are looked
up as ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` under ``<label>/`` or ``<label_with_underscores>/``
(optionally below ``<split>/`` or ``<split>_videos/``) or directly in the root; the first existing
candidate wins, else the first candidate is used (and reported missing by ``uniformer data check``).

``read_kinetics_split`` sniffs which of the formats a file is in.
"""
import csv
import os
from pathlib import Path
from typing import List, Optional

from .video import (ClipSpec, ListFormatError, PathLike, VideoDataset, VideoItem, class_lookup, fail,
                    normalize_class_name, resolve_classes)

ANNOTATION_HEADER = ("label", "youtube_id", "time_start", "time_end", "split")
ANNOTATION_EXTENSIONS = (".mp4", ".webm", ".mkv")


def _label_int(text: str):
    t = text.strip()
    return int(t) if t.isdigit() or (t.startswith("-") and t[1:].isdigit()) else None


def read_kinetics_list(path: PathLike, root: PathLike, errors: Optional[list] = None) -> List[VideoItem]:
    """Items of an official ``path,label`` list or a PySlowFast ``path label`` list (paths under ``root``).
    The separator is the last comma of a line, or else its last run of whitespace. A malformed
    line raises ``ListFormatError``, or is recorded in ``errors`` as ``(where, message)`` and skipped."""
    path, root = Path(path), Path(root)
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        where = f"{path}:{n}"
        splits = [stripped.rpartition(",")[::2], tuple(stripped.rsplit(None, 1))]  # (path, label) candidates
        parsed = [(rel.strip(), _label_int(label)) for rel, label in (c for c in splits if len(c) == 2)]
        parsed = [(rel, value) for rel, value in parsed if rel and value is not None]
        if not parsed:
            fail(errors, where, f"{line!r} is not 'relative/path.mp4,label_index' or 'relative/path.mp4 label_index'")
            continue
        items.append(VideoItem(os.fspath(root / parsed[0][0]), parsed[0][1], source=where))
    if not items and errors is None:
        raise ListFormatError(f"{path}: empty list")
    return items


def annotation_clip_name(youtube_id: str, time_start: float, time_end: float, ext: str = ".mp4") -> str:
    """``<youtube_id>_<start:06d>_<end:06d>.mp4``, the name the usual Kinetics download scripts give a clip."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}{ext}"


def annotation_candidates(root: Path, label: str, youtube_id: str, time_start: str, time_end: str,
                          split: str) -> List[Path]:
    dirs = list(dict.fromkeys([label, label.replace(" ", "_")]))
    out = []
    for ext in ANNOTATION_EXTENSIONS:
        name = annotation_clip_name(youtube_id, time_start, time_end, ext)
        for d in dirs:
            out += [root / d / name, root / split / d / name, root / f"{split}_videos" / d / name]
        out.append(root / name)
    return out


def read_kinetics_annotations(path: PathLike, root: PathLike, class_index,
                              errors: Optional[list] = None) -> List[VideoItem]:
    """Items of a Kinetics annotation CSV (``label,youtube_id,time_start,time_end,split``), labels from
    ``class_index`` (a class-index file, several, or the names in label order). Bad rows and class names
    missing from the index raise ``ListFormatError`` or are recorded in ``errors``."""
    path, root = Path(path), Path(root)
    classes = resolve_classes(class_index)
    lookup = class_lookup(classes)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(c.strip() for c in rows[0][:5]) != ANNOTATION_HEADER:
        fail(errors, f"{path}:1", f"expected the header {','.join(ANNOTATION_HEADER)}")
        return []
    items = []
    for n, row in enumerate(rows[1:], 2):
        if not row or not "".join(row).strip():
            continue
        where = f"{path}:{n}"
        if len(row) < 5:
            fail(errors, where, f"{','.join(row)!r}: expected {len(ANNOTATION_HEADER)} fields "
                                f"({','.join(ANNOTATION_HEADER)})")
            continue
        label, yid, t0, t1, split = (c.strip() for c in row[:5])
        try:
            float(t0), float(t1)
        except ValueError:
            fail(errors, where, f"time_start/time_end {t0!r}, {t1!r} are not numbers")
            continue
        key = normalize_class_name(label)
        if key not in lookup:
            fail(errors, where, f"class {label!r} is not in the class index ({len(classes)} classes)")
            continue
        candidates = annotation_candidates(root, label, yid, t0, t1, split)
        found = next((c for c in candidates if c.is_file()), candidates[0])
        items.append(VideoItem(os.fspath(found), lookup[key], source=where))
    if not items and errors is None:
        raise ListFormatError(f"{path}: no clips")
    return items


def is_annotation_csv(path: PathLike) -> bool:
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    return tuple(c.strip() for c in first.split(",")[:5]) == ANNOTATION_HEADER


def read_kinetics_split(path: PathLike, root: PathLike, class_index=None,
                        errors: Optional[list] = None) -> List[VideoItem]:
    """Items of any of the three formats (annotation CSV recognised by its header; it needs ``class_index``)."""
    if is_annotation_csv(path):
        if class_index is None:
            fail(errors, f"{path}", "a Kinetics annotation CSV names its classes, so it needs a class index "
                                    "(--class-index FILE) to map them to labels")
            return []
        return read_kinetics_annotations(path, root, class_index, errors)
    return read_kinetics_list(path, root, errors)


class Kinetics(VideoDataset):
    """A Kinetics split: ``root`` + a list file in any supported format.

    ``class_index`` (file(s) or names) fixes label order and range; required for an annotation CSV and for
    evaluating an official checkpoint (``video.require_class_index``).
    """

    def __init__(self, root: PathLike, list_file: PathLike, spec: ClipSpec, mode: str = "train",
                 class_index=None, **kwargs):
        classes = resolve_classes(class_index) if class_index is not None else None
        items = read_kinetics_split(list_file, root, classes)
        super().__init__(items, spec, mode, classes, name=os.fspath(list_file), **kwargs)
