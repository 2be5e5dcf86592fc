"""The published ADE20K test protocol (mmseg 0.13 as configured by the official UperNet / Semantic FPN configs).

One small function per step: keep-ratio rescale to (2048, 512) (UperNet: no padding; Semantic FPN: stretched
to a multiple of 32), whole-image inference, logits -> original size (bilinear, align_corners=False),
softmax; multi-scale + flip averages the softmax probabilities over ratios 0.5 .. 1.75 and both flips.
"""
import math
from typing import Iterable, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

IMG_SCALE = (2048, 512)  # (long side max, short side max)
MS_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
MEAN = (123.675, 116.28, 103.53)  # RGB, on 0-255 values
STD = (58.395, 57.12, 57.375)
IGNORE = 255


def rescale_size(h: int, w: int, scale: Tuple[int, int] = IMG_SCALE) -> Tuple[int, int]:
    """mmcv keep-ratio rescale: factor min(long_max / long, short_max / short), sides rounded half up."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def align_size(h: int, w: int, divisor: int = 32) -> Tuple[int, int]:
    """Semantic FPN's AlignResize: each side up to the next multiple of ``divisor`` (the image is stretched)."""
    return int(math.ceil(h / divisor)) * divisor, int(math.ceil(w / divisor)) * divisor


def input_size(h: int, w: int, ratio: float = 1.0, align: bool = False,
               img_scale: Tuple[int, int] = IMG_SCALE) -> Tuple[int, int]:
    """Network input size of an (h, w) image at one multi-scale ratio: scale (int(2048 r), int(512 r))."""
    size = rescale_size(h, w, (int(img_scale[0] * ratio), int(img_scale[1] * ratio)))
    return align_size(*size) if align else size


def resize_uint8(img: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> ``size`` (h, w): bilinear without antialiasing (what cv2 INTER_LINEAR does; cv2 is not
    installed, so results may differ from it by rounding in a few pixels), rounded back to uint8."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def normalize(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) RGB uint8 -> (1, 3, H, W) float, mean/std on 0-255 values."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
    return ((x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None])[None]


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """ADE20K annotations: 0 ("other") -> ignored (255), class k -> k - 1 (150 classes 0..149)."""
    out = label.astype(np.int64) - 1
    out[label == 0] = IGNORE
    return out.astype(np.uint8)


@torch.no_grad()
def whole_probs(model, x: torch.Tensor, out_size: Tuple[int, int], flip: bool = False) -> torch.Tensor:
    """Softmax probabilities at ``out_size`` from one whole-image pass (the model returns logits at its input
    size); with ``flip`` the input is mirrored and the result mirrored back."""
    logits = model(x.flip(-1) if flip else x)
    probs = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False).softmax(dim=1)
    return probs.flip(-1) if flip else probs


@torch.no_grad()
def predict(model, img: np.ndarray, ratios: Sequence[float] = (1.0,), flip: bool = False,
            align: bool = False, img_scale: Tuple[int, int] = IMG_SCALE) -> np.ndarray:
    """Label map (H, W) of an RGB uint8 image at its original size: the mean softmax over ``ratios`` (x flips),
    then argmax. Single scale: ``ratios=(1.0,)``; the published MS+flip: ``MS_RATIOS, flip=True``.
    ``align``: Semantic FPN's resize to a multiple of 32. ``img_scale``: the published (2048, 512) unless a smoke
    run wants small inputs."""
    h, w = img.shape[:2]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))  # the model's (a stub: CPU)
    total, n = None, 0
    for ratio in ratios:
        size = input_size(h, w, ratio, False, img_scale)
        scaled = resize_uint8(img, size)
        if align:  # AlignResize resizes the rescaled image a second time (not the original once)
            scaled = resize_uint8(scaled, align_size(*size))
        x = normalize(scaled).to(device)
        for f in ((False, True) if flip else (False,)):
            p = whole_probs(model, x, (h, w), flip=f)
            total, n = (p if total is None else total + p), n + 1
    return (total / n).argmax(dim=1)[0].to(torch.uint8).cpu().numpy()


def ms_sizes(h: int, w: int, ratios: Iterable[float] = MS_RATIOS, align: bool = False) -> List[Tuple[int, int]]:
    """The input sizes of the multi-scale test (for reports and tests)."""
    return [input_size(h, w, r, align) for r in ratios]
