"""Something-Something V1 and V2: the official split lists over extracted frames, and V2 as distributed.

Official lists (``somesomev{1,2}_rgb_{train,validation}_split.txt``), one video per line, over extracted
JPEG frame folders (TSM-style; frames numbered from 1)::

    74225 62 140                  video_id num_frames label_index   ->  ROOT/74225/img_00001.jpg ...

V2 as its provider distributes it: ``ROOT/<id>.webm`` and JSON label files::

    something-something-v2-labels.json        {"Approaching something with your camera": "0", ...}
    something-something-v2-train.json         [{"id": "78687", "label": "holding potato next to vicks",
    something-something-v2-validation.json      "template": "Holding [something] next to [something]",
                                                "placeholders": ["potato", "vicks"]}, ...]

A JSON entry's label comes from its ``template`` (brackets and case ignored, ``normalize_class_name``)
looked up in ``class_index`` if given -- the class order of the published checkpoints,
``sthv2_category.txt``, one template per line -- else in the labels JSON.
"""
import json
import os
from pathlib import Path
from typing import List, Optional

from .video import (FRAME_TEMPLATE, ClipSpec, ListFormatError, PathLike, VideoDataset, VideoItem, class_lookup,
                    fail, load_video_class_index, normalize_class_name, resolve_classes)

LIST_NAME = "somesomev{version}_rgb_{split}_split.txt"  # split: train | validation
V2_LABELS = "something-something-v2-labels.json"
V2_SPLIT_JSON = "something-something-v2-{split}.json"
V2_VIDEO_EXT = ".webm"


def read_sth_list(path: PathLike, root: PathLike, frame_template: str = FRAME_TEMPLATE,
                  errors: Optional[list] = None) -> List[VideoItem]:
    """Items of an official ``video_id num_frames label_index`` list; frame folders ``root/<video_id>/``.
    A malformed line raises ``ListFormatError``, or is recorded in ``errors`` and skipped."""
    path, root = Path(path), Path(root)
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].lstrip("-").isdigit():
            fail(errors, f"{path}:{n}", f"{line!r} is not 'video_id num_frames label_index'")
            continue
        items.append(VideoItem(os.fspath(root / parts[0]), int(parts[2]), num_frames=int(parts[1]),
                               frame_template=frame_template, source=f"{path}:{n}"))
    if not items and errors is None:
        raise ListFormatError(f"{path}: empty list")
    return items


def read_ssv2_json(path: PathLike, root: PathLike, class_index=None, labels: Optional[PathLike] = None,
                   ext: str = V2_VIDEO_EXT, errors: Optional[list] = None) -> List[VideoItem]:
    """Items of ``something-something-v2-{train,validation}.json`` over ``root/<id>.webm``.

    Templates map to labels through ``class_index`` (file(s) or template names in label order) if given,
    else through ``labels`` (the labels JSON; default: ``something-something-v2-labels.json`` next to
    ``path``). Bad entries raise ``ListFormatError`` or are recorded in ``errors``."""
    path, root = Path(path), Path(root)
    classes = _ssv2_classes(path, class_index, labels)
    lookup = class_lookup(classes)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        fail(errors, str(path), f"not valid JSON ({e})")
        return []
    if not isinstance(entries, list):
        fail(errors, str(path), "expected a JSON list of {id, label, template, placeholders}")
        return []
    items = []
    for n, e in enumerate(entries):
        where = f"{path}[{n}]"
        if not isinstance(e, dict) or "id" not in e or "template" not in e:
            fail(errors, where, f"{str(e)[:80]!r} has no 'id' and 'template' (a test list without labels "
                                f"cannot be used for training or evaluation)")
            continue
        key = normalize_class_name(e["template"])
        if key not in lookup:
            fail(errors, where, f"id {e['id']}: template {e['template']!r} is not in the class index "
                                f"({len(classes)} classes)")
            continue
        items.append(VideoItem(os.fspath(root / f"{e['id']}{ext}"), lookup[key], source=where))
    if not items and errors is None:
        raise ListFormatError(f"{path}: no videos")
    return items


def _ssv2_classes(list_path: Path, class_index, labels) -> List[str]:
    if class_index is not None:
        return resolve_classes(class_index)
    labels = Path(labels) if labels is not None else list_path.with_name(V2_LABELS)
    if not labels.is_file():
        raise ListFormatError(f"{list_path}: needs the labels JSON ({labels} not found) or a class index "
                              f"(--class-index FILE) to map templates to labels")
    return load_video_class_index(labels)


def read_something_split(path: PathLike, root: PathLike, class_index=None, labels=None,
                         frame_template: str = FRAME_TEMPLATE, errors: Optional[list] = None) -> List[VideoItem]:
    """Items of a split list (``*.txt``) or, for V2, a split JSON (``*.json``)."""
    if Path(path).suffix.lower() == ".json":
        return read_ssv2_json(path, root, class_index, labels, errors=errors)
    return read_sth_list(path, root, frame_template, errors)


class SomethingSomething(VideoDataset):
    """A Something-Something V1/V2 split: ``root`` + a split list (frame folders) or V2 split JSON (webm).

    Use segment sampling and no flip (``ClipSpec(sampling="segment", random_flip=False, ...)`` or
    ``ClipSpec.from_pretrained_cfg``): left/right are different classes.
    """

    def __init__(self, root: PathLike, list_file: PathLike, spec: ClipSpec, mode: str = "train",
                 class_index=None, labels: Optional[PathLike] = None, frame_template: str = FRAME_TEMPLATE,
                 **kwargs):
        classes = resolve_classes(class_index) if class_index is not None else None
        items = read_something_split(list_file, root, classes, labels, frame_template)
        if classes is None and Path(list_file).suffix.lower() == ".json":
            classes = _ssv2_classes(Path(list_file), None, labels)
        super().__init__(items, spec, mode, classes, name=os.fspath(list_file), **kwargs)
