"""The published COCO top-down test protocol (mmpose 0.16 as configured by the official configs).

One small function per step: person box -> (centre, scale) with the aspect fix and x1.25 padding, the affine
crop, Gaussian heatmap targets (training), flip test with the one-column shift, argmax decoding with the
quarter-pixel refinement, mapping back to the image, rescoring and OKS-NMS.
"""
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))  # COCO left/right
SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0
PIXEL_STD = 200.0  # mmpose's scale unit: scale = box size / 200
PADDING = 1.25
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # on ToTensor's 0-1 RGB


def box_to_center_scale(box: Sequence[float], image_size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y, w, h) -> centre, scale (w, h)/200: the box is widened or heightened to the crop's aspect
    ``image_size`` = (width, height), then padded by 1.25."""
    x, y, w, h = box[:4]
    aspect = image_size[0] / image_size[1]
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    return center, np.array([w, h], dtype=np.float32) / PIXEL_STD * PADDING


def crop_matrix(center, scale, image_size: Tuple[int, int]) -> np.ndarray:
    """2x3 image -> crop affine map for rotation 0 (what get_affine_transform gives then): a uniform scale
    output_width / (scale_w * 200) about the box centre, which lands on the crop centre."""
    s = image_size[0] / (scale[0] * PIXEL_STD)
    return np.array([[s, 0, image_size[0] * 0.5 - s * center[0]],
                     [0, s, image_size[1] * 0.5 - s * center[1]]], dtype=np.float64)


def warp_crop(img: np.ndarray, matrix: np.ndarray, image_size: Tuple[int, int]) -> np.ndarray:
    """cv2.warpAffine(img, matrix, image_size) with bilinear sampling and a zero border, in torch (cv2 is not a
    dependency): every output pixel samples the input at the inverse-mapped position (pixel centres at integers)."""
    h, w = img.shape[:2]
    inv = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    u, v = np.meshgrid(np.arange(image_size[0]), np.arange(image_size[1]))
    src = np.stack([u, v, np.ones_like(u)], -1) @ inv.T  # (H', W', 2) input x, y
    grid = torch.from_numpy(np.stack([2 * src[..., 0] / (w - 1) - 1, 2 * src[..., 1] / (h - 1) - 1], -1)).float()
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    out = F.grid_sample(x, grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def normalize_crop(crop: np.ndarray) -> torch.Tensor:
    """(H, W, 3) RGB uint8 -> (3, H, W): ToTensor (/255), then ImageNet mean / std."""
    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def crop_keypoints(keypoints: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(K, 3) image keypoints -> crop coordinates by the crop's affine map (the visibility column is kept)."""
    out = np.asarray(keypoints, np.float64).copy()
    out[:, :2] = out[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    return out


def gaussian_target(joints: np.ndarray, visible: np.ndarray, image_size, heatmap_size, sigma: float = 2.0):
    """MSRA heatmaps (K, H, W) and weights (K,): a Gaussian at the joint's heatmap cell (rounded half up, then
    truncated toward zero as int() does), cut to a (6 sigma + 1) square; joints whose square misses the map get
    weight 0."""
    W, H = heatmap_size
    stride = np.asarray(image_size, np.float64) / np.asarray(heatmap_size, np.float64)
    target = np.zeros((len(joints), H, W), np.float32)
    weight = (np.asarray(visible) > 0).astype(np.float32)
    r = int(sigma * 3)
    yy, xx = np.mgrid[0:H, 0:W]
    for k, (jx, jy) in enumerate(np.asarray(joints)[:, :2]):
        mx, my = int(jx / stride[0] + 0.5), int(jy / stride[1] + 0.5)
        if mx - r >= W or my - r >= H or mx + r + 1 < 0 or my + r + 1 < 0:
            weight[k] = 0
            continue
        if weight[k] > 0.5:
            g = np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / (2 * sigma ** 2))
            target[k] = np.where((abs(xx - mx) <= r) & (abs(yy - my) <= r), g, 0)
    return target, weight


def flip_back(heatmaps: torch.Tensor, flip_pairs=FLIP_PAIRS, shift: bool = True) -> torch.Tensor:
    """Heatmaps (N, K, H, W) of a mirrored input -> the original frame: mirror, swap left/right joints, then
    (``shift_heatmap``) move one column right, as published."""
    out = heatmaps.flip(-1).clone()
    for a, b in flip_pairs:
        out[:, [a, b]] = out[:, [b, a]]
    if shift:
        out[..., 1:] = out[..., :-1].clone()
    return out


@torch.no_grad()
def flip_test(model, crops: torch.Tensor) -> torch.Tensor:
    """Mean of the heatmaps of the crops and of their mirror images (flipped back and shifted)."""
    return (model(crops) + flip_back(model(crops.flip(-1)))) * 0.5


def max_preds(heatmaps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Argmax (x, y) per joint and its value; (-1, -1) where the maximum is <= 0."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx, maxval = flat.argmax(-1), flat.max(-1)
    preds = np.stack([idx % w, idx // w], -1).astype(np.float32)
    preds[maxval <= 0] = -1
    return preds, maxval[..., None]


def refine_quarter(preds: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """'default' post-processing: move each coordinate 0.25 towards the higher neighbour when the peak is not on
    the map's outer two rows/columns (1 < x < W-1, 1 < y < H-1)."""
    preds = preds.copy()
    h, w = heatmaps.shape[2:]
    for n, k in np.ndindex(*preds.shape[:2]):
        hm, px, py = heatmaps[n, k], int(preds[n, k, 0]), int(preds[n, k, 1])
        if 1 < px < w - 1 and 1 < py < h - 1:
            preds[n, k] += 0.25 * np.sign([hm[py, px + 1] - hm[py, px - 1], hm[py + 1, px] - hm[py - 1, px]])
    return preds


def to_image(coords: np.ndarray, center, scale, heatmap_size) -> np.ndarray:
    """Heatmap coordinates -> image: coord * (scale*200 / heatmap size) + centre - scale*200 / 2 (no UDP)."""
    size = np.asarray(scale) * PIXEL_STD
    return coords * size / np.asarray(heatmap_size) + np.asarray(center) - size * 0.5


def decode(heatmaps: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(N, K, H, W) heatmaps -> image keypoints (N, K, 2) and scores (N, K, 1)."""
    preds, maxval = max_preds(heatmaps)
    preds = refine_quarter(preds, heatmaps)
    size = heatmaps.shape[3], heatmaps.shape[2]
    return np.stack([to_image(p, c, s, size) for p, c, s in zip(preds, centers, scales)]), maxval


def rescore(box_score: float, joint_scores: np.ndarray, vis_thr: float = 0.2) -> float:
    """Instance score = box score x mean of the joint scores above ``vis_thr`` (0 if none is)."""
    good = joint_scores[joint_scores > vis_thr]
    return float(box_score * (good.mean() if good.size else 0.0))


def oks(g: np.ndarray, d: np.ndarray, area_g: float, area_d: np.ndarray, sigmas=SIGMAS) -> np.ndarray:
    """OKS between keypoints ``g`` (K, 3) and each of ``d`` (N, K, 3), all joints counted, mean area."""
    var = (2 * sigmas) ** 2
    e = ((d[..., 0] - g[:, 0]) ** 2 + (d[..., 1] - g[:, 1]) ** 2) / var / ((area_g + area_d[:, None]) / 2
                                                                           + np.spacing(1)) / 2
    return np.exp(-e).mean(-1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float = 0.9) -> List[int]:
    """Greedy NMS by score: drop every instance whose OKS with a kept one exceeds ``thr``; kept indices."""
    order, keep = np.argsort(scores)[::-1], []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        order = rest[oks(keypoints[i], keypoints[rest], areas[i], areas[rest]) <= thr] if rest.size else rest
    return keep
