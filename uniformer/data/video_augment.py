"""Training augmentation of the official video recipes (SlowFast ``AUG.*`` + ``TRAIN_JITTER_*_RELATIVE``).

Per training sample, in the order of the official ``_aug_frame``:

1. **RandAugment** (``AUG.AA_TYPE``, e.g. ``rand-m7-n4-mstd0.5-inc1``) on the decoded uint8 frames, with the
   same ops and magnitudes for every frame of the clip (timm's ``rand_augment_transform``, replayed per frame
   with one RNG state, see ``apply_to_frames``);
2. **relative-area crop** (``TRAIN_JITTER_SCALES_RELATIVE`` / ``TRAIN_JITTER_ASPECT_RELATIVE``): one
   Inception-style random crop of the full frame (area share in ``scale``, log-uniform aspect in ``ratio``)
   resized to the crop size, the same box for every frame; without ``scale`` the short-side jitter + random
   crop of the plain SlowFast recipe is used;
3. horizontal flip (``ClipSpec.random_flip``; off for Something-Something);
4. **random erasing** (``AUG.RE_PROB``, mode ``pixel``) after normalisation, one box through all frames (the
   official ``RandomErasing(cube=True)``): timm's ``RandomErasing`` on the clip viewed as ``(C*T, H, W)``.

``num_sample`` (``AUG.NUM_SAMPLE``) draws that many augmented clips from one decoded clip (repeated
augmentation): the dataset returns ``(num_sample, C, T, H, W)`` and the trainer flattens them into the batch,
so a step of ``batch_size`` videos trains on ``batch_size * num_sample`` clips, as in the official loader.
"""
import functools
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import str_to_pil_interp
from torch.nn import functional as F

from ..config import ConfigError
from .timm_fixes import patch_timm_posterize

AUG_KEYS = ("rand_augment", "interpolation", "scale", "ratio", "reprob", "remode", "recount", "num_sample")


@dataclass(frozen=True)
class ClipAugment:
    """The ``aug`` block of a video training recipe; every field off by default (plain SlowFast training)."""
    rand_augment: Optional[str] = None         # timm RandAugment string (AUG.AA_TYPE); None = off
    interpolation: str = "bicubic"             # RandAugment geometric ops (AUG.INTERPOLATION)
    scale: Optional[Tuple[float, float]] = None  # relative-area crop (TRAIN_JITTER_SCALES_RELATIVE); None = off
    ratio: Tuple[float, float] = (0.75, 1.3333)  # TRAIN_JITTER_ASPECT_RELATIVE
    reprob: float = 0.0                        # AUG.RE_PROB
    remode: str = "pixel"                      # AUG.RE_MODE
    recount: int = 1                           # AUG.RE_COUNT
    num_sample: int = 1                        # AUG.NUM_SAMPLE (repeated augmentation)

    def __post_init__(self):
        if self.rand_augment and not str(self.rand_augment).startswith("rand"):
            raise ConfigError(f"aug.rand_augment={self.rand_augment!r}: a timm RandAugment string such as "
                              "'rand-m7-n4-mstd0.5-inc1' (or null)")
        if self.scale is not None and not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ConfigError(f"aug.scale={list(self.scale)}: need 0 < lo <= hi <= 1 (area share of the frame)")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(f"aug.ratio={list(self.ratio)}: need 0 < lo <= hi")
        if not 0 <= self.reprob <= 1:
            raise ConfigError(f"aug.reprob={self.reprob}: a probability in [0, 1]")
        if self.remode not in ("const", "rand", "pixel"):
            raise ConfigError(f"aug.remode={self.remode!r}: const, rand or pixel")
        if int(self.num_sample) < 1 or int(self.recount) < 1:
            raise ConfigError("aug.num_sample and aug.recount must be >= 1")

    @classmethod
    def from_cfg(cls, block: Optional[Mapping[str, Any]]) -> "ClipAugment":
        """From the recipe's ``aug`` block; null values keep the defaults (off)."""
        block = dict(block or {})
        unknown = sorted(set(block) - set(AUG_KEYS))
        if unknown:
            raise ConfigError(f"aug: unknown key(s) {unknown} (known: {list(AUG_KEYS)})")
        kw = {k: v for k, v in block.items() if v is not None}
        for k in ("scale", "ratio"):
            if k in kw:
                kw[k] = tuple(float(v) for v in kw[k])
        for k, t in (("reprob", float), ("recount", int), ("num_sample", int)):
            if k in kw:
                kw[k] = t(kw[k])
        return cls(**kw)


def apply_to_frames(transform: Callable, images: Sequence[Any]) -> List[Any]:
    """``transform`` (a random PIL transform drawing from ``random`` / ``np.random``, as timm's are) applied to
    every frame with the same draws: both RNG states are reset before each frame, so a clip gets one rotation,
    one magnitude, one op sequence (the official per-clip RandAugment) while timm's code is used as it is."""
    py_state, np_state = random.getstate(), np.random.get_state()
    out = []
    for img in images:
        random.setstate(py_state)
        np.random.set_state(np_state)
        out.append(transform(img))
    return out


@functools.lru_cache(maxsize=16)
def build_rand_augment(config: str, frame_hw: Tuple[int, int], interpolation: str = "bicubic"):
    """timm RandAugment with the hyper-parameters SlowFast's ``create_random_augment`` gives it (built once per
    config and frame size: its draws come from the global RNGs, the transform itself holds no state)."""
    patch_timm_posterize()  # 'inc1' may ask Pillow 13 for 0-bit posterize
    hparams = {"translate_const": int(min(frame_hw) * 0.45)}
    if interpolation and interpolation != "random":
        hparams["interpolation"] = str_to_pil_interp(interpolation)
    return rand_augment_transform(config, hparams)


def rand_augment_frames(frames: np.ndarray, aug: ClipAugment) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 -> the same, RandAugment'ed with one draw for the whole clip."""
    transform = build_rand_augment(aug.rand_augment, tuple(frames.shape[1:3]), aug.interpolation)
    out = apply_to_frames(transform, [Image.fromarray(f) for f in frames])
    return np.stack([np.asarray(img) for img in out])


def uniform(lo: float, hi: float, generator: Optional[torch.Generator] = None) -> float:
    """A draw from U(lo, hi) with ``generator`` (None: torch's global RNG); shared with the clip sampling."""
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def relative_crop_box(height: int, width: int, scale: Tuple[float, float], ratio: Tuple[float, float],
                      generator: Optional[torch.Generator] = None, attempts: int = 10) -> Tuple[int, int, int, int]:
    """``(top, left, h, w)`` of an Inception-style crop: area share ~ U(scale), aspect log-uniform in ``ratio``;
    after ``attempts`` misses the centre crop clamped to ``ratio`` (SlowFast ``_get_param_spatial_crop``).
    Ours rather than torchvision's ``RandomResizedCrop.get_params`` because that one cannot take a generator."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target = uniform(*scale, generator) * area
        aspect = math.exp(uniform(*log_ratio, generator))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(frames: torch.Tensor, size: int, scale: Tuple[float, float], ratio: Tuple[float, float],
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One relative-area crop box for all of ``(T, C, H, W)``, resized to ``size`` x ``size`` (bilinear)."""
    top, left, h, w = relative_crop_box(frames.shape[-2], frames.shape[-1], scale, ratio, generator)
    crop = frames[..., top:top + h, left:left + w]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)


def erase_clip(clip: torch.Tensor, aug: ClipAugment) -> torch.Tensor:
    """timm ``RandomErasing`` on a normalised ``(C, T, H, W)`` clip seen as ``(C*T, H, W)``: one box through
    every frame, per-pixel noise in ``pixel`` mode (the official ``RandomErasing(cube=True)``)."""
    c, t, h, w = clip.shape
    erase = RandomErasing(aug.reprob, mode=aug.remode, max_count=aug.recount, num_splits=0, device="cpu")
    return erase(clip.reshape(c * t, h, w)).reshape(c, t, h, w)
