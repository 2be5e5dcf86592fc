"""Shared video data layer: class-index files, decoding (PyAV), frame sampling, clip transforms, dataset.

The format modules (``kinetics``, ``something``) only parse their list files into ``VideoItem``\\ s; this
module turns an item into tensors the way the official SlowFast code base does:

* **class index** -- the published checkpoints use the class order of the official repo's
  ``data_list/`` files (not alphabetical): ``load_video_class_index`` reads them (``name<TAB>index``,
  ``name index`` as in the two Kinetics-600 lists, one name / template per line, or the SSV2 labels JSON);
  ``require_class_index`` is the guard for evaluating an official checkpoint.
* **decoding** -- ``decode_video`` decodes a file with PyAV (strict: an unreadable file, no video stream
  or zero frames raise ``BadVideoError``), only as far as the planned clips reach when the container
  declares its frame count (mp4); ``read_frame_files`` reads extracted JPEG frames
  (``<folder>/img_00001.jpg`` ...).
* **temporal sampling** -- ``dense_indices`` (Kinetics: T frames, one every ``stride``; random clip in
  training, clip k of K uniformly placed at test; SlowFast ``get_start_end_idx`` + ``temporal_sampling``,
  including the ``target_fps`` rescaling) and ``segment_indices`` (Something-Something: T equal segments,
  a random frame per segment in training, the centre at test; the official ``sth`` loader).
* **spatial** -- training: short side drawn from ``train_scales``, random ``crop_size`` crop, optional
  horizontal flip, or the paper recipes' RandAugment / relative-area crop / random erasing / repeated
  samples (``video_augment.ClipAugment``); val/test: short side ``test_scale`` (default ``crop_size``), 1 centre crop or 3 crops
  (left/centre/right, or top/centre/bottom for portrait frames); then ``(x/255 - mean) / std``.
* **views** -- ``mode="test"`` returns every view of a video, ``(V, C, T, H, W)`` with
  ``V = temporal_clips * spatial_crops`` in SlowFast order (view ``v`` = clip ``v // crops``, crop
  ``v % crops``), so an evaluator averages the V scores of a video; ``"train"`` and ``"val"`` return one
  clip ``(C, T, H, W)`` (val: the centre clip, centre crop), train ``(N, C, T, H, W)`` with N repeated samples.

Unreadable videos do not stop an epoch: like ``ImageNetFolder``, ``VideoDataset.get_checked`` returns the
next readable video in its place with ``ok=False``, and ``loader.build_loader`` counts the skips.
"""
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from ..config import ConfigError
from .images import BadImageError, open_image
from .video_augment import ClipAugment, erase_clip, rand_augment_frames, random_resized_crop, uniform

log = logging.getLogger(__name__)

FRAME_TEMPLATE = "img_{:05d}.jpg"  # official sth scripts: frames numbered from 1
SAMPLINGS = ("dense", "segment")
MODES = ("train", "val", "test")
# SlowFast DATA.MEAN / DATA.STD on [0, 1] RGB (= ``models.video_catalog.VIDEO_MEAN/STD``, the cfgs' mean/std;
# not imported from there so the data layer does not load the model registry).
VIDEO_MEAN = (0.45, 0.45, 0.45)
VIDEO_STD = (0.225, 0.225, 0.225)

PathLike = Union[str, os.PathLike]


class BadVideoError(OSError):
    """A video (file or frame folder) that cannot be decoded: unreadable, no video stream, zero frames."""


class ClassIndexError(ConfigError):
    """A missing or malformed class-index file; the message says which file the user must supply."""


# --- class index ------------------------------------------------------------------------------------------

def normalize_class_name(name: str) -> str:
    """The key under which class names from different files are matched.

    Lower case, apostrophes dropped, every other run of non-alphanumerics one ``_``: the annotation CSV's
    ``massaging person's head`` and ``passing American football (in game)`` meet the Kinetics-600 list's
    ``massaging_persons_head`` and ``passing_American_football_in_game``; SSV2's ``Moving [something] up``
    meets SSV1's ``Moving something up``.
    """
    s = name.strip().lower().replace("'", "")
    return re.sub(r"[^0-9a-z]+", "_", s).strip("_")


def _index_pairs(path: Path) -> List[Tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    fix = ("expected 'name<TAB>index' lines, 'name index' lines, one name per line (index = line number), "
           "or the SSV2 labels JSON {template: index}")
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            return [(int(v), str(k)) for k, v in json.loads(text).items()]
        except (ValueError, TypeError, AttributeError) as e:
            raise ClassIndexError(f"{path}: bad class-index JSON ({e}); {fix}") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ClassIndexError(f"{path}: empty class index; {fix}")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise ClassIndexError(f"{path}:{n}: empty line inside the class index; {fix}")
    if any("\t" in ln for ln in lines):  # 'name<TAB>index' (Kinetics-400: names contain spaces)
        pairs = []
        for n, line in enumerate(lines, 1):
            name, _, index = line.rpartition("\t")
            if not name.strip() or not index.strip().isdigit():
                raise ClassIndexError(f"{path}:{n}: {line!r} is not 'name<TAB>index'; {fix}")
            pairs.append((int(index), name.strip()))
        return pairs
    split = [ln.rstrip().rsplit(None, 1) for ln in lines]
    if all(len(p) == 2 and p[1].isdigit() for p in split):  # 'name index' (the Kinetics-600 lists)
        return [(int(i), name.strip()) for name, i in split]
    return [(n, ln.strip()) for n, ln in enumerate(lines)]  # one name per line (the sth category files)


def load_video_class_index(path: Union[PathLike, Sequence[PathLike]]) -> List[str]:
    """Class names in label order (label = list position) from one class-index file or several whose
    indices together run 0..N-1 (the Kinetics-600 ``common`` + ``special`` lists). Names are kept as
    written; match them with ``normalize_class_name``. Raises ``ClassIndexError`` naming the file."""
    paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    if not paths:
        raise ClassIndexError("no class-index file given")
    pairs: List[Tuple[int, str]] = []
    for p in paths:
        if not p.is_file():
            raise ClassIndexError(f"{p}: class-index file not found")
        pairs += _index_pairs(p)
    where = ", ".join(map(str, paths))
    pairs.sort()
    indices = [i for i, _ in pairs]
    if indices != list(range(len(pairs))):
        dup = sorted({i for i in indices if indices.count(i) > 1})[:5]
        missing = sorted(set(range(max(indices) + 1)) - set(indices))[:5]
        raise ClassIndexError(f"{where}: class indices must be 0..{len(pairs) - 1}, each once "
                              f"(repeated: {dup or 'none'}, missing: {missing or 'none'})")
    names = [n for _, n in pairs]
    keys = [normalize_class_name(n) for n in names]
    dup = sorted({n for n, k in zip(names, keys) if keys.count(k) > 1})
    if dup:
        raise ClassIndexError(f"{where}: class name(s) listed more than once: {', '.join(dup[:5])}")
    return names


def resolve_classes(class_index: Union[PathLike, Sequence[PathLike], Sequence[str]]) -> List[str]:
    """Class names in label order from a class-index file, several files, or the names themselves."""
    if isinstance(class_index, (str, os.PathLike)):
        return load_video_class_index(class_index)
    class_index = list(class_index)
    if class_index and all(isinstance(c, os.PathLike) or (isinstance(c, str) and os.path.isfile(c))
                           for c in class_index):
        return load_video_class_index(class_index)
    return [str(c) for c in class_index]


def class_lookup(classes: Sequence[str]) -> Dict[str, int]:
    """``normalize_class_name(name) -> label`` for a class index."""
    return {normalize_class_name(n): i for i, n in enumerate(classes)}


# Where the official repo keeps the class order each checkpoint was trained with (data_list/ there).
OFFICIAL_CLASS_INDEX = {
    "k400": "video_classification/data_list/k400/kinetics_400_categroies.txt",
    "k600": "video_classification/data_list/k600/k600_common_category.list + k600_special_category.list",
    "sthv1": "video_classification/data_list/sthv1/category.txt",
    "sthv2": "video_classification/data_list/sthv2/category.txt",
}


def _checkpoint_dataset(checkpoint: str) -> Optional[str]:
    s = os.path.basename(str(checkpoint)).lower()
    for key, pattern in (("k400", r"k400|kinetics.?400"), ("k600", r"k600|kinetics.?600"),
                         ("sthv1", r"sthv1|ssv1|sth.?v1|something.?something.?v1"),
                         ("sthv2", r"sthv2|ssv2|sth.?v2|something.?something.?v2")):
        if re.search(pattern, s):
            return key
    return None


def require_class_index(path: Optional[Union[PathLike, Sequence[PathLike]]], checkpoint: PathLike,
                        num_classes: Optional[int] = None) -> List[str]:
    """The class index to evaluate an official video ``checkpoint`` with; raises ``ClassIndexError`` when
    ``path`` is None (the published models' class order is not alphabetical, so labels derived any other
    way would silently score near zero) or when its length differs from ``num_classes``."""
    key = _checkpoint_dataset(checkpoint)
    hint = (f"the file the official repo uses for it is {OFFICIAL_CLASS_INDEX[key]} (Sense-X/UniFormer)" if key
            else "use the category file from the official repo's video_classification/data_list/ for the data "
                 "set it was trained on")
    if path is None or (not isinstance(path, (str, os.PathLike)) and not list(path)):
        raise ClassIndexError(
            f"{checkpoint}: an official checkpoint needs the class-index file it was trained with (its class "
            f"order is not alphabetical); pass it with --class-index FILE; {hint}. This project does not "
            f"ship those files.")
    classes = load_video_class_index(path)
    if num_classes is not None and len(classes) != num_classes:
        raise ClassIndexError(f"{path}: {len(classes)} classes, but {checkpoint} predicts {num_classes}; {hint}")
    return classes


# --- items ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoItem:
    """One video of a split: a file (``num_frames`` None) or a folder of extracted frames."""
    path: str
    label: int
    num_frames: Optional[int] = None  # frame folders: the count given by the list file
    frame_template: str = FRAME_TEMPLATE
    source: str = ""  # "list-file:line", for messages

    @property
    def is_frames(self) -> bool:
        return self.num_frames is not None

    def frame_path(self, i: int) -> str:
        """Path of frame ``i`` (0-based; files are numbered from 1)."""
        return os.path.join(self.path, self.frame_template.format(i + 1))


class ListFormatError(ConfigError):
    """A list / annotation file that cannot be parsed; the message names the file and line."""


def fail(errors: Optional[list], where: str, message: str) -> None:
    """Raise ``ListFormatError`` (``errors`` None) or record ``(where, message)`` and go on (the checker)."""
    if errors is None:
        raise ListFormatError(f"{where}: {message}")
    errors.append((where, message))


def check_label_range(items: Sequence[VideoItem], num_classes: int, what: str) -> None:
    """Raise ``ListFormatError`` naming the first items whose label is outside 0..num_classes-1."""
    bad = [it for it in items if not 0 <= it.label < num_classes]
    if bad:
        shown = "; ".join(f"{it.source or it.path}: label {it.label}" for it in bad[:5])
        raise ListFormatError(f"{len(bad)} label(s) outside 0..{num_classes - 1} ({what}): {shown}"
                              f"{' ...' if len(bad) > 5 else ''}")


# --- decoding ---------------------------------------------------------------------------------------------

class DecodedVideo:
    """Frames of a video file, still in the decoder's pixel format; ``rgb(indices)`` converts the ones a clip
    needs. ``fps``: the stream's average frame rate (None if unknown); ``header_frames``: the frame count
    the container declares (0 if it does not, e.g. WebM); ``complete``: False if decoding stopped early."""

    def __init__(self, frames: list, fps: Optional[float], header_frames: int = 0, complete: bool = True):
        self.frames = frames
        self.fps = fps
        self.header_frames = header_frames
        self.complete = complete

    def __len__(self):
        return len(self.frames)

    def rgb(self, indices: Sequence[int]) -> np.ndarray:
        """``(len(indices), H, W, 3)`` uint8."""
        return np.stack([self.frames[i].to_ndarray(format="rgb24") for i in indices])


def decode_video(path: PathLike, plan: Optional[Callable[[int, Optional[float]], Optional[int]]] = None
                 ) -> DecodedVideo:
    """Decode the first video stream of ``path`` with PyAV; ``BadVideoError`` if the file is unreadable, has
    no video stream or yields no frame.

    Every frame is decoded unless ``plan(header_frames, fps)`` returns the last frame index a clip needs
    (computed from the container's declared frame count): decoding then stops there (``complete`` False).
    """
    import av  # lazy: PyAV only when a video is read (keeps `uniformer --help` and image runs from loading it)

    path = os.fspath(path)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise BadVideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else None
            header = int(stream.frames or 0)
            last = plan(header, fps) if plan is not None and header > 0 else None
            frames = []
            for frame in container.decode(stream):
                frames.append(frame)
                if last is not None and len(frames) > last:
                    break
    except BadVideoError:
        raise
    except Exception as e:  # av.FFmpegError (InvalidDataError, ...), OSError, ...
        raise BadVideoError(f"{path}: unreadable video ({type(e).__name__}: {e})") from e
    if not frames:
        raise BadVideoError(f"{path}: zero frames decoded")
    return DecodedVideo(frames, fps, header, complete=last is None or len(frames) <= last)


def read_frame_files(item: VideoItem, indices: Sequence[int]) -> np.ndarray:
    """``(len(indices), H, W, 3)`` uint8 from a frame folder (each distinct frame read once)."""
    unique = {}
    for i in indices:
        if i not in unique:
            path = item.frame_path(i)
            if not os.path.isfile(path):
                raise BadVideoError(f"{path}: missing frame ({item.num_frames} listed in {item.source or 'the list'})")
            try:
                unique[i] = np.asarray(open_image(path))
            except BadImageError as e:
                raise BadVideoError(str(e)) from e
    shapes = {a.shape for a in unique.values()}
    if len(shapes) > 1:
        raise BadVideoError(f"{item.path}: frames of different sizes {sorted(shapes)}")
    return np.stack([unique[i] for i in indices])


# --- temporal sampling ------------------------------------------------------------------------------------

def dense_indices(num_frames: int, clip_len: int, stride: int, clip_idx: Optional[int] = None,
                  num_clips: int = 1, fps: Optional[float] = None, target_fps: Optional[float] = None,
                  generator: Optional[torch.Generator] = None, use_offset: bool = False) -> np.ndarray:
    """Frame indices (0-based) of a dense clip: ``clip_len`` frames spanning ``clip_len * stride`` frames.

    ``clip_idx``: -1 a random clip (training), None the centre clip, k the k-th of ``num_clips`` clips
    (start = k / num_clips of the slack, as SlowFast's ``get_start_end_idx``; with ``use_offset``, its
    ``DATA.USE_OFFSET_SAMPLING`` that the Kinetics configs set, start = k * floor(slack / (num_clips - 1)):
    the first clip at the start, the last at the end). With ``fps`` and
    ``target_fps`` the span is rescaled to ``clip_len * stride * fps / target_fps`` source frames, so the
    stride is counted at ``target_fps`` (SlowFast ``DATA.TARGET_FPS``, 30). Indices past the end of a short
    video repeat the last frame.
    """
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    span = clip_len * stride * (fps / target_fps if fps and target_fps else 1.0)
    delta = max(num_frames - span, 0.0)
    if clip_idx == -1:
        start = uniform(0.0, delta, generator)
    elif clip_idx is None:
        start = math.floor(delta / 2)
    else:
        if not 0 <= clip_idx < num_clips:
            raise ValueError(f"clip_idx {clip_idx} outside 0..{num_clips - 1}")
        start = clip_idx * math.floor(delta / (num_clips - 1)) if use_offset and num_clips > 1 else \
            math.floor(delta / 2) if use_offset else delta * clip_idx / num_clips
    index = torch.linspace(start, start + span - 1, clip_len)
    return torch.clamp(index, 0, num_frames - 1).long().numpy()


def segment_indices(num_frames: int, num_segments: int, clip_idx: Optional[int] = None, num_clips: int = 1,
                    generator: Optional[torch.Generator] = None) -> np.ndarray:
    """Frame indices (0-based) of segment-based sampling (the official ``sth`` loader).

    The video is cut into ``num_segments`` segments of ``(num_frames - 1) / num_segments`` frames;
    ``clip_idx`` -1 takes a random frame of each segment (training), None the centre one, k the
    (k+1)/(num_clips+1) point of each segment (k-th of ``num_clips`` temporal views).
    """
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    seg = (num_frames - 1) / num_segments
    out = []
    for i in range(num_segments):
        start, end = int(np.round(seg * i)), int(np.round(seg * (i + 1)))
        if clip_idx == -1:
            out.append(start + int(torch.randint(0, end - start + 1, (), generator=generator)))
        else:
            k, n = (0, 1) if clip_idx is None else (clip_idx, num_clips)
            if not 0 <= k < n:
                raise ValueError(f"clip_idx {clip_idx} outside 0..{num_clips - 1}")
            out.append(start + int(seg / (n + 1) * (k + 1)))
    return np.minimum(np.asarray(out, dtype=np.int64), num_frames - 1)


# --- spatial ----------------------------------------------------------------------------------------------

def short_side_resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(T, C, H, W)`` float frames so the short side is ``size`` (bilinear; SlowFast rounding)."""
    h, w = frames.shape[-2:]
    if min(h, w) == size:
        return frames
    if w < h:
        new_h, new_w = int(math.floor(h / w * size)), size
    else:
        new_h, new_w = size, int(math.floor(w / h * size))
    return F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False)


def uniform_crop(frames: torch.Tensor, size: int, spatial_idx: int) -> torch.Tensor:
    """``size`` x ``size`` crop of ``(..., H, W)``: 0 left/top, 1 centre, 2 right/bottom (along the long side)."""
    h, w = frames.shape[-2:]
    if min(h, w) < size:
        raise ValueError(f"frames {h}x{w} smaller than the crop {size}")
    y, x = int(math.ceil((h - size) / 2)), int(math.ceil((w - size) / 2))
    if h > w:
        y = {0: 0, 1: y, 2: h - size}[spatial_idx]
    else:
        x = {0: 0, 1: x, 2: w - size}[spatial_idx]
    return frames[..., y:y + size, x:x + size]


def random_crop(frames: torch.Tensor, size: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    h, w = frames.shape[-2:]
    y = int(torch.randint(0, h - size + 1, (), generator=generator))
    x = int(torch.randint(0, w - size + 1, (), generator=generator))
    return frames[..., y:y + size, x:x + size]


# --- clip specification -----------------------------------------------------------------------------------

def _sampling_kind(frame_sampling: str, stride: Optional[int]) -> str:
    s = (frame_sampling or "").lower()
    if "dense" in s or (not s and stride):
        return "dense"
    if "sparse" in s or "segment" in s or not s:
        return "segment"
    raise ValueError(f"unknown frame sampling {frame_sampling!r}")


@dataclass(frozen=True)
class ClipSpec:
    """How a video becomes model input. Defaults follow the SlowFast / UniFormer configs.

    ``train_scales``: training short side drawn uniformly from [lo, hi] (``DATA.TRAIN_JITTER_SCALES``; the
    paper recipes crop by relative area instead, see ``video_augment.ClipAugment``);
    ``test_scale``: val/test short side (None = ``crop_size``, what the official test.sh / README use).
    ``random_flip`` must stay False for Something-Something (left/right classes; ``RANDOM_FLIP: False``).
    ``target_fps``: None counts the dense stride in the file's frames (the official configs decode with
    decord, which does not resample to ``DATA.TARGET_FPS``); a number rescales it to that frame rate (PyAV
    backend of SlowFast). ``use_offset``: SlowFast's ``DATA.USE_OFFSET_SAMPLING`` test-clip placement.
    """
    num_frames: int = 16
    sampling: str = "dense"
    stride: int = 4
    target_fps: Optional[float] = None
    crop_size: int = 224
    train_scales: Tuple[int, int] = (256, 320)
    test_scale: Optional[int] = None
    temporal_clips: int = 1
    spatial_crops: int = 1
    random_flip: bool = True
    use_offset: bool = False
    mean: Tuple[float, ...] = VIDEO_MEAN
    std: Tuple[float, ...] = VIDEO_STD

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling={self.sampling!r}; expected one of {SAMPLINGS}")
        if self.spatial_crops not in (1, 3):
            raise ValueError(f"spatial_crops={self.spatial_crops}; expected 1 or 3")
        if self.num_frames < 1 or self.temporal_clips < 1 or self.stride < 1:
            raise ValueError("num_frames, temporal_clips and stride must be >= 1")
        if not self.crop_size <= self.train_scales[0] <= self.train_scales[1]:
            raise ValueError(f"train_scales={self.train_scales}: need crop_size ({self.crop_size}) <= lo <= hi")
        if self.test_scale is not None and self.test_scale < self.crop_size:
            raise ValueError(f"test_scale={self.test_scale} is smaller than crop_size={self.crop_size}")

    @property
    def num_views(self) -> int:
        return self.temporal_clips * self.spatial_crops

    @classmethod
    def from_pretrained_cfg(cls, cfg: Union[Mapping[str, Any], Any], **overrides) -> "ClipSpec":
        """The spec of a published video model (``model.pretrained_cfg`` dict or a video cfg dataclass):
        frames, dense stride or segments, crop size, test views, mean/std; no flip for Something-Something
        (the ``sth`` loader's configs set ``RANDOM_FLIP: False``); offset test clips for dense sampling (every
        dense Kinetics config sets ``USE_OFFSET_SAMPLING: True``)."""
        get = cfg.get if isinstance(cfg, Mapping) else (lambda k, d=None: getattr(cfg, k, d))
        _, t, h, _ = get("input_size")
        stride = get("sampling_stride")
        frame_sampling = get("frame_sampling") or ""
        sampling = _sampling_kind(frame_sampling, stride)
        sth = "sth" in frame_sampling.lower() or get("num_classes") == 174
        kw = dict(num_frames=int(t), sampling=sampling, stride=int(stride or 1), crop_size=int(h),
                  temporal_clips=int(get("temporal_clips") or 1), spatial_crops=int(get("spatial_crops") or 1),
                  random_flip=not sth, use_offset=sampling == "dense", mean=tuple(get("mean") or VIDEO_MEAN), std=tuple(get("std") or VIDEO_STD))
        kw.update(overrides)
        return cls(**kw)


def temporal_views(spec: ClipSpec, num_frames: int, mode: str, fps: Optional[float] = None,
                   generator: Optional[torch.Generator] = None) -> List[np.ndarray]:
    """The frame indices of each temporal view: 1 random (train), 1 centre (val), ``temporal_clips`` (test)."""
    clips = [-1] if mode == "train" else [None] if mode == "val" else list(range(spec.temporal_clips))
    n_clips = spec.temporal_clips if mode == "test" else 1
    if spec.sampling == "dense":
        return [dense_indices(num_frames, spec.num_frames, spec.stride, c, n_clips, fps, spec.target_fps,
                              generator, spec.use_offset) for c in clips]
    return [segment_indices(num_frames, spec.num_frames, c, n_clips, generator) for c in clips]


def frames_to_views(frames: np.ndarray, spec: ClipSpec, mode: str,
                    generator: Optional[torch.Generator] = None,
                    augment: Optional[ClipAugment] = None) -> List[torch.Tensor]:
    """``(T, H, W, 3)`` uint8 of one temporal view -> its spatial views, each ``(C, T, crop, crop)`` float,
    normalised. Training: ``augment.num_sample`` clips (default 1), each RandAugment'ed, cropped (relative
    area, or scale jitter + random crop), flipped and erased per ``augment`` (see ``video_augment``); val: 1
    centre crop; test: ``spatial_crops``."""
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)

    def to_float(f: np.ndarray) -> torch.Tensor:  # T H W C uint8 -> T C H W in [0, 1]
        return torch.from_numpy(np.ascontiguousarray(f)).permute(0, 3, 1, 2).float().div_(255.0)

    if mode != "train":
        x = short_side_resize(to_float(frames), spec.test_scale or spec.crop_size)
        idx = [1] if mode == "val" or spec.spatial_crops == 1 else [0, 1, 2]
        crops = [uniform_crop(x, spec.crop_size, i) for i in idx]
        return [((c - mean) / std).permute(1, 0, 2, 3).contiguous() for c in crops]  # C T H W
    aug = augment or ClipAugment()
    clips = []
    for _ in range(aug.num_sample):
        x = to_float(rand_augment_frames(frames, aug) if aug.rand_augment else frames)
        if aug.scale is not None:
            x = random_resized_crop(x, spec.crop_size, aug.scale, aug.ratio, generator)
        else:
            lo, hi = spec.train_scales
            x = short_side_resize(x, int(round(uniform(lo, hi, generator))) if hi > lo else lo)
            x = random_crop(x, spec.crop_size, generator)
        if spec.random_flip and float(torch.rand((), generator=generator)) < 0.5:
            x = x.flip(-1)
        clip = ((x - mean) / std).permute(1, 0, 2, 3).contiguous()  # C T H W
        clips.append(erase_clip(clip, aug) if aug.reprob > 0 else clip)
    return clips


def load_views(item: VideoItem, spec: ClipSpec, mode: str, generator: Optional[torch.Generator] = None,
               augment: Optional[ClipAugment] = None) -> torch.Tensor:
    """Decode ``item`` and build its views: ``(C, T, H, W)`` in val (and train), ``(V, C, T, H, W)`` in test,
    ``(N, C, T, H, W)`` in train with ``augment.num_sample`` N > 1 (N augmentations of one decoded clip)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; expected one of {MODES}")
    if item.is_frames:
        if item.num_frames < 1:
            raise BadVideoError(f"{item.path}: zero frames listed ({item.source})")
        index_sets = temporal_views(spec, item.num_frames, mode, None, generator)
        read = lambda idx: read_frame_files(item, idx)  # noqa: E731
    else:
        # Sample from the declared frame count and decode only as far as the clips reach (a random training
        # clip rarely needs the whole video); without a declared count, or if the video turns out shorter,
        # sample from the frames actually decoded.
        planned = []

        def plan(header_frames: int, fps: Optional[float]) -> int:
            planned.extend(temporal_views(spec, header_frames, mode, fps, generator))
            return max(int(idx.max()) for idx in planned)

        video = decode_video(item.path, plan)
        index_sets = planned if planned and not video.complete else \
            temporal_views(spec, len(video), mode, video.fps, generator)
        read = video.rgb
    views = [v for idx in index_sets for v in frames_to_views(read(idx), spec, mode, generator, augment)]
    return views[0] if len(views) == 1 and mode != "test" else torch.stack(views)


# --- dataset ----------------------------------------------------------------------------------------------

class VideoDataset(Dataset):
    """``(clip, label)`` per video of ``items``; ``get_checked`` gives ``(clip, label, ok)`` for the shared
    loader. A bad video is logged once per process, recorded in ``bad_files`` and replaced by the next
    readable one in index order (``ok=False``), so an epoch is reproducible.

    ``classes``: the class names in label order (a class index), or None; labels must lie in
    0..len(classes)-1 when given. Random draws (training clip, scale, crop, flip) use ``generator`` or, if
    None (the right choice with DataLoader workers, which seed torch per worker), torch's global RNG.
    ``augment``: the training augmentation of the recipe (``video_augment.ClipAugment``; train mode only).
    """

    def __init__(self, items: Sequence[VideoItem], spec: ClipSpec, mode: str = "train",
                 classes: Optional[Sequence[str]] = None, name: str = "video",
                 generator: Optional[torch.Generator] = None, augment: Optional[ClipAugment] = None):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; expected one of {MODES}")
        if not items:
            raise ValueError(f"{name}: no videos in the list")
        self.items = list(items)
        self.spec = spec
        self.mode = mode
        self.classes = list(classes) if classes is not None else None
        if self.classes is not None:
            check_label_range(self.items, len(self.classes), "the class index")
        else:
            check_label_range(self.items, max(it.label for it in self.items) + 1, "no class index given")
        self.name = name
        self.generator = generator
        self.augment = augment if mode == "train" else None
        self.bad_files: List[str] = []
        self._bad = set()

    def __len__(self):
        return len(self.items)

    @property
    def targets(self) -> List[int]:
        return [it.label for it in self.items]

    def get_checked(self, index: int):
        """``(clip, label, ok)``: ``ok`` is False when the video at ``index`` was bad and the next readable
        one (wrapping around) was returned in its place."""
        n = len(self.items)
        for step in range(n):
            item = self.items[(index + step) % n]
            if item.path in self._bad:
                continue
            try:
                clip = load_views(item, self.spec, self.mode, self.generator, self.augment)
            except BadVideoError as e:
                self._bad.add(item.path)
                self.bad_files.append(item.path)
                log.warning("skipping bad video %s", e)
                continue
            return clip, item.label, step == 0
        raise RuntimeError(f"{self.name}: none of the {n} videos is readable; run `uniformer data check`")

    def __getitem__(self, index: int):
        clip, label, _ = self.get_checked(index)
        return clip, label
