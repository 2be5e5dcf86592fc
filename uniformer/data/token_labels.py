"""Token labelling (LV-ViT / UniFormer ``token_labeling``): dense score maps, their crop / flip, their targets.

Map files, as the official ``generate_label.py`` writes them (the NFNet-F6 ``label_top5_train_nfnet`` set):
one ``torch.save``d tensor per training image at ``<label root>/<class folder>/<image stem>.pt`` (the official
``DatasetTokenLabel`` pairs them by the image's last two path parts, extension replaced by ``.pt``), shape
``(2, k, H, W)`` float16: ``[0]`` the teacher's top-k scores (raw logits) at each of ``H x W`` locations,
``[1]`` their class indices (k = 5, 15 x 15 for the NFNet-F6 maps).

Training (official ``tlt.data.mixup.get_labelmaps_with_coords``): the top-k scores are scattered into a dense
``(C, H, W)`` map (0 elsewhere), the crop box of the image's RandomResizedCrop is cut out of it with RoIAlign
(the image's horizontal flip flips the map), and a softmax over the classes gives the soft target of the
class token (1 x 1) and of every stage-4 token; label smoothing as ``target * on + off``.

With ``aa`` (official ``tlt/data/random_augment_label.py``; the official recipe's ``rand-m9-mstd0.5-inc1``)
RandAugment runs between the flip and the crop, in place of colour jitter, and its geometric ops (ShearX/Y,
TranslateX/Y[Rel], Rotate) move the map with the image: the same op, magnitude and sign, nearest neighbour,
top-k scores 0 where the map is shifted in from outside (a uniform target there), class indices of the
nearest edge cell.
"""
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import RandomResizedCropAndInterpolation
from timm.data.random_erasing import RandomErasing
from torchvision import transforms as T
from torchvision.ops import roi_align
from timm.data.auto_augment import rand_augment_transform
from timm.data.transforms import str_to_pil_interp
from torchvision.transforms import functional as TF

from ..io import atomic_path, write_json
from .imagenet import ImageNetFolder, dataset_manifest_hash
from .timm_fixes import patch_timm_posterize

MAP_DTYPE = torch.float16  # the official files (indices < 2048 are exact in float16)


# --- files ----------------------------------------------------------------------------------------------------
def map_path(label_root: os.PathLike, image_path: os.PathLike) -> Path:
    """``<label root>/<class folder>/<stem>.pt`` of an image (official ``DatasetTokenLabel``)."""
    image_path = Path(image_path)
    return Path(label_root) / image_path.parent.name / (image_path.name.split(".")[0] + ".pt")


def write_map(path: os.PathLike, scores: torch.Tensor, indices: torch.Tensor) -> None:
    """Write top-k ``scores`` and class ``indices``, each ``(k, H, W)``, in the official format."""
    if scores.shape != indices.shape or scores.dim() != 3:
        raise ValueError(f"scores {tuple(scores.shape)} and indices {tuple(indices.shape)}: want two (k, H, W)")
    with atomic_path(path) as tmp:
        torch.save(torch.stack([scores.to(MAP_DTYPE), indices.to(MAP_DTYPE)]), tmp)


def read_map(path: os.PathLike, image: Optional[os.PathLike] = None) -> torch.Tensor:
    """The ``(2, k, H, W)`` float32 map at ``path``; a missing file is a clear error naming the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no token-label map{f' for {image}' if image else ''}. Token labelling needs one file per "
            "training image, <root>/<class folder>/<image stem>.pt as the official generate_label.py writes them "
            "(the NFNet-F6 label_top5_train_nfnet set); point train.imagenet.<settings>.token_label.root at them, "
            "or set token_label: null to train without token labels.")
    m = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(m, torch.Tensor) or m.dim() != 4 or m.shape[0] != 2:
        raise ValueError(f"{path}: a token-label map is a (2, k, H, W) tensor; found "
                         f"{tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__}")
    return m.float()


# --- label-map-aware RandAugment ----------------------------------------------------------------------------------
GEOMETRIC_OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel", "Rotate")


def op_matrix(name: str, arg: float, width: int, height: int) -> np.ndarray:
    """The ``2 x 3`` output -> input affine of the timm / PIL geometric op ``name`` with level argument ``arg``
    on a ``width x height`` image, in continuous pixel coordinates (pixel edges on integers, PIL's
    ``Image.transform`` / ``Image.rotate`` convention): ``(x_in, y_in) = M @ (x, y, 1)``."""
    if name == "ShearX":  # PIL (1, f, 0, 0, 1, 0)
        return np.array([[1.0, arg, 0.0], [0.0, 1.0, 0.0]])
    if name == "ShearY":  # PIL (1, 0, 0, f, 1, 0)
        return np.array([[1.0, 0.0, 0.0], [arg, 1.0, 0.0]])
    if name in ("TranslateX", "TranslateXRel"):  # Rel: a fraction of the width, else pixels
        return np.array([[1.0, 0.0, arg * width if name.endswith("Rel") else arg], [0.0, 1.0, 0.0]])
    if name in ("TranslateY", "TranslateYRel"):
        return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, arg * height if name.endswith("Rel") else arg]])
    if name == "Rotate":  # PIL Image.rotate(degrees): counter-clockwise about the image centre (w/2, h/2)
        a = -math.radians(arg)
        c, s = math.cos(a), math.sin(a)
        cx, cy = width / 2.0, height / 2.0
        return np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy]])
    raise ValueError(f"{name}: not a geometric RandAugment op ({', '.join(GEOMETRIC_OPS)})")


def affine_map(label_map: torch.Tensor, matrix: np.ndarray, image_size: Tuple[int, int]) -> torch.Tensor:
    """Apply an image affine (``op_matrix``, pixels of a ``(width, height)`` image) to a ``(2, k, H, W)`` map.

    The map covers the whole image, so pixel coordinates scale to map coordinates by ``(W / width,
    H / height)``; each map cell takes the cell under its centre's pre-image (nearest neighbour). Cells whose
    pre-image falls outside the map get top-k scores 0 (a uniform target) and the nearest edge cell's class
    indices (official: ``ndimage.affine_transform(order=0)``, mode ``constant`` for scores, ``nearest`` for
    indices)."""
    H, W = label_map.shape[-2:]
    sx, sy = W / float(image_size[0]), H / float(image_size[1])
    lin = np.diag([sx, sy]) @ matrix[:, :2] @ np.diag([1.0 / sx, 1.0 / sy])  # the same map in map units
    shift = np.array([sx, sy]) * matrix[:, 2]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5,
                            torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij")
    x_in = torch.floor(lin[0, 0] * xs + lin[0, 1] * ys + shift[0] + 1e-9).long()
    y_in = torch.floor(lin[1, 0] * xs + lin[1, 1] * ys + shift[1] + 1e-9).long()
    inside = (x_in >= 0) & (x_in < W) & (y_in >= 0) & (y_in < H)
    out = label_map[..., y_in.clamp(0, H - 1), x_in.clamp(0, W - 1)].clone()
    out[0] *= inside.to(out.dtype)
    return out


def official_map_op(label_map: torch.Tensor, name: str, arg: float) -> torch.Tensor:
    """The official map op (``random_augment_label.NAME_TO_LABELOP``), for bit-exact reproduction: the image
    op's shear factor / angle used unchanged in map *index* coordinates (so not scaled for a non-square image),
    rotation about index ``(H/2, W/2)`` and shear about cell ``(0, 0)``'s centre (both half a cell off the
    image's centre / corner), translations as a fraction of the map size; ``scipy.ndimage.affine_transform``
    order 0, scores ``constant`` 0, indices ``nearest``. No map op for the absolute TranslateX / TranslateY."""
    from scipy import ndimage

    H, W = label_map.shape[-2:]
    if name == "ShearX":  # (row, col) matrices: row_in = a r + b c + t0, col_in = d r + e c + t1
        m = (1.0, 0.0, 0.0, arg, 1.0, 0.0)
    elif name == "ShearY":
        m = (1.0, arg, 0.0, 0.0, 1.0, 0.0)
    elif name == "TranslateXRel":
        m = (1.0, 0.0, 0.0, 0.0, 1.0, arg * W)
    elif name == "TranslateYRel":
        m = (1.0, 0.0, arg * H, 0.0, 1.0, 0.0)
    elif name == "Rotate":
        a = math.radians(arg)
        c, s = round(math.cos(a), 15), round(math.sin(a), 15)
        m = (c, s, H / 2.0 - c * H / 2.0 - s * W / 2.0, -s, c, W / 2.0 + s * H / 2.0 - c * W / 2.0)
    else:
        return label_map
    mat = [[1, 0, 0, 0], [0, m[0], m[1], m[2]], [0, m[3], m[4], m[5]]]
    arr = label_map.numpy()
    return torch.from_numpy(np.stack([ndimage.affine_transform(arr[0], matrix=mat, order=0, mode="constant"),
                                      ndimage.affine_transform(arr[1], matrix=mat, order=0, mode="nearest")]))


MAP_GEOMETRIES = ("aligned", "official")


class _Recorded:
    """An image op of timm's RandAugment that records (op name, level arguments, image size) when it runs."""

    def __init__(self, name: str, fn, log: list):
        self.name, self.fn, self.log = name, fn, log

    def __call__(self, img, *args, **kwargs):
        self.log.append((self.name, args, img.size))
        return self.fn(img, *args, **kwargs)


class LabelRandAugment:
    """timm's RandAugment (``config``, e.g. ``rand-m9-mstd0.5-inc1``) on the image, and each geometric op it
    applied on the label map with the same magnitude and sign (official ``random_augment_label.RandAugment``).

    Op choice, the per-op probability, the magnitude noise (``mstd``) and the sign are timm's own draws: its
    image ops are wrapped to record what ran, and the map follows the record, so the image sees exactly the
    random stream of timm's plain RandAugment. ``geometry``: ``aligned`` (default) moves the map exactly as the
    image (``affine_map``); ``official`` repeats the official map ops (``official_map_op``)."""

    def __init__(self, config: str, hparams: Dict[str, Any], geometry: str = "aligned"):
        if geometry not in MAP_GEOMETRIES:
            raise ValueError(f"geometry={geometry!r}: one of {', '.join(MAP_GEOMETRIES)}")
        self.geometry = geometry
        if not str(config).startswith("rand"):
            raise ValueError(f"aa={config!r}: token labelling supports RandAugment ('rand-...') only, as the "
                             "official label-aware transform does")
        patch_timm_posterize()
        self.ra = rand_augment_transform(config, dict(hparams))
        self.log: list = []
        for op in self.ra.ops:
            op.aug_fn = _Recorded(op.name, op.aug_fn, self.log)

    def __call__(self, img, label_map: torch.Tensor):
        del self.log[:]
        img = self.ra(img)
        for name, args, size in self.log:
            if name not in GEOMETRIC_OPS:
                continue
            if self.geometry == "official":
                label_map = official_map_op(label_map, name, float(args[0]))
            else:
                label_map = affine_map(label_map, op_matrix(name, float(args[0]), *size), size)
        return img, label_map


def rand_augment_hparams(size: int, mean, interpolation: str) -> Dict[str, Any]:
    """timm's / the official ``transforms_imagenet_train``'s RandAugment hparams: translate_const 45% of the crop
    size, fill = the mean pixel, the training interpolation unless ``random`` (then bilinear or bicubic at
    random per op)."""
    hp = {"translate_const": int(size * 0.45), "img_mean": tuple(min(255, round(255 * x)) for x in mean)}
    if interpolation and interpolation != "random":
        hp["interpolation"] = str_to_pil_interp(interpolation)
    return hp


# --- the label-map-aware image transform ------------------------------------------------------------------------
class TokenLabelTransform:
    """(PIL image, map) -> (normalised image tensor, map, crop box): the official ``transforms_imagenet_train``
    order: horizontal flip (image and map), RandAugment (``aa``: the image, and the map for its geometric ops)
    or else colour jitter (image only; the official builds no jitter when ``aa`` is set), RandomResizedCrop (its
    box, normalised ``(x1, y1, x2, y2)`` of the augmented image, goes with the map), to tensor, normalise,
    random erasing."""

    def __init__(self, size: int, scale: Sequence[float], ratio: Sequence[float], hflip: float,
                 color_jitter: Optional[float], interpolation: str, mean, std, re_prob: float = 0.0,
                 re_mode: str = "pixel", re_count: int = 1, aa: Optional[str] = None, map_geometry: str = "aligned"):
        self.hflip = float(hflip)
        self.randaug = (LabelRandAugment(aa, rand_augment_hparams(size, mean, interpolation), map_geometry)
                        if aa else None)
        self.jitter = T.ColorJitter(*(float(color_jitter),) * 3) if color_jitter and not aa else None
        self.rrc = RandomResizedCropAndInterpolation(size, scale=tuple(scale), ratio=tuple(ratio),
                                                     interpolation=interpolation)
        self.to_tensor = T.Compose([T.ToTensor(), T.Normalize(mean=torch.tensor(mean), std=torch.tensor(std))])
        self.erase = RandomErasing(re_prob, mode=re_mode, max_count=re_count, device="cpu") if re_prob else None

    def __call__(self, img, label_map: torch.Tensor):
        if torch.rand(1) < self.hflip:
            img, label_map = TF.hflip(img), label_map.flip(-1)
        if self.randaug is not None:
            img, label_map = self.randaug(img, label_map)
        elif self.jitter is not None:
            img = self.jitter(img)
        i, j, h, w = self.rrc.get_params(img, self.rrc.scale, self.rrc.ratio)
        width, height = img.size
        # Official stores (top, left, bottom, right) and hands it to roi_align, which reads (x1, y1, x2, y2): a
        # transposed box. This keeps the map aligned with the image (tests/test_token_labels.py).
        box = torch.tensor([j / width, i / height, (j + w) / width, (i + h) / height])
        interp = self.rrc.interpolation
        if isinstance(interp, (list, tuple)):
            interp = interp[int(torch.randint(len(interp), (1,)))]
        img = TF.resized_crop(img, i, j, h, w, list(self.rrc.size), interp)
        x = self.to_tensor(img)
        if self.erase is not None:
            x = self.erase(x)
        return x, label_map, box


def build_token_label_transform(cfg: Dict[str, Any], size: int, mean, std) -> TokenLabelTransform:
    """The recipe's transform (``aa``: RandAugment strings only, ``ImageClassification.check_recipe``)."""
    return TokenLabelTransform(size, cfg["scale"], cfg["ratio"], cfg["hflip"], cfg["color_jitter"] or None,
                               cfg["train_interpolation"], mean, std, float(cfg["reprob"]), cfg["remode"],
                               int(cfg["recount"]), aa=cfg.get("aa") or None,
                               map_geometry=(cfg.get("token_label") or {}).get("randaug_geometry") or "aligned")


class TokenLabelFolder(ImageNetFolder):
    """ImageNet folders whose samples come with their token-label map: target ``{"label", "map", "box"}``."""

    def __init__(self, root: os.PathLike, label_root: os.PathLike, transform: TokenLabelTransform, **kwargs):
        super().__init__(root, "train", **kwargs)
        self.label_root, self.pair_transform = Path(label_root), transform

    def get_checked(self, index: int):
        img, label, ok = super().get_checked(index)  # self.transform is None: a PIL image
        n = len(self.samples)
        # the sample returned: the first not-bad one from ``index`` (as ImageNetFolder.get_checked picks it)
        path = next(p for p, _ in (self.samples[(index + s) % n] for s in range(n)) if p not in self._bad)
        x, label_map, box = self.pair_transform(img, read_map(map_path(self.label_root, path), path))
        return x, {"label": label, "map": label_map, "box": box}, ok


# --- targets ------------------------------------------------------------------------------------------------------
def dense_scores(maps: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(B, 2, k, H, W)`` top-k maps -> ``(B, C, H, W)`` scores, 0 for the classes outside the top k."""
    dense = maps.new_zeros(maps.shape[0], num_classes, *maps.shape[-2:])
    return dense.scatter_(1, maps[:, 1].long(), maps[:, 0])


def crop_scores(dense: torch.Tensor, boxes: torch.Tensor, out_hw: Tuple[int, int]) -> torch.Tensor:
    """RoIAlign of each map's normalised box ``(x1, y1, x2, y2)`` to ``out_hw`` -> ``(B, C, h, w)`` scores.
    As the official, box corners sit on pixel edges (``* size - 0.5``, ``aligned=False``)."""
    H, W = dense.shape[-2:]
    scale = boxes.new_tensor([W, H, W, H])
    rois = torch.cat([torch.arange(len(boxes), dtype=boxes.dtype, device=boxes.device)[:, None],
                      boxes * scale - 0.5], 1)
    return roi_align(dense, rois, output_size=tuple(out_hw))


def token_label_targets(targets: Dict[str, torch.Tensor], num_classes: int, token_hw: Tuple[int, int],
                        smoothing: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(class target ``(B, C)``, token targets ``(B, h*w, C)``) of a batch, official
    ``create_token_label_target``: softmax over classes of the cropped scores, then ``* on + off``."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    dense = dense_scores(targets["map"].float(), num_classes)
    boxes = targets["box"].float()
    cls = crop_scores(dense, boxes, (1, 1)).flatten(1).softmax(1)
    tokens = crop_scores(dense, boxes, token_hw).flatten(2).transpose(1, 2).softmax(2)
    return cls * on + off, tokens * on + off


def mix_token_targets(tokens: torch.Tensor, token_hw: Tuple[int, int], box) -> torch.Tensor:
    """Token targets of a MixToken batch: inside ``box`` (stage-4 units ``(y1, x1, y2, x2)``) each sample's
    tokens came from the flipped batch. (The model instead undoes the mix on its per-token logits, as the
    official one does; the two give the same loss.)"""
    y1, x1, y2, x2 = box
    grid = tokens.reshape(tokens.shape[0], *token_hw, -1)
    out = grid.clone()
    out[:, y1:y2, x1:x2] = grid.flip(0)[:, y1:y2, x1:x2]
    return out.reshape(tokens.shape)


def mixtoken_lam(box_stage4, n_tokens: int) -> float:
    """Official TokenLabelCrossEntropy: ``1 - box area / tokens`` with the box in stage-4 tokens."""
    y1, x1, y2, x2 = box_stage4
    return 1.0 - (y2 - y1) * (x2 - x1) / float(n_tokens)


def soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


# --- maps for the synthetic set ------------------------------------------------------------------------------------
def write_synthetic_maps(data_root: os.PathLike, label_root: os.PathLike, num_classes: int, size: int = 14,
                         topk: int = 5, seed: int = 0) -> int:
    """Maps in the official format for ``data_root/train`` from each image's known class (a teacher that
    knows the label): the true class scores 8 at every location, k-1 other classes draw lower scores.
    ``label_root/synth.json`` records what they were written for (data set hash and arguments): a match
    writes nothing, anything else rewrites them all. Returns how many it wrote."""
    stamp = {"dataset": dataset_manifest_hash(data_root), "classes": num_classes, "size": size, "topk": topk,
             "seed": seed}
    marker = Path(label_root) / "synth.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return 0
    ds = ImageNetFolder(data_root, "train")
    k = min(topk, num_classes)
    for n, (path, label) in enumerate(ds.samples):  # sorted paths: the same maps whatever ran before
        rng = np.random.default_rng([seed, n])
        others = rng.permutation([c for c in range(num_classes) if c != label])[:k - 1]
        idx = torch.tensor([label, *others.tolist()], dtype=torch.float32)[:, None, None].expand(k, size, size)
        scores = torch.tensor(np.sort(rng.uniform(0, 4, (k - 1, size, size)), axis=0)[::-1].copy(),
                              dtype=torch.float32)
        write_map(map_path(label_root, path), torch.cat([torch.full((1, size, size), 8.0), scores]), idx)
    write_json(marker, stamp)  # last: an interrupted run rewrites them
    return len(ds.samples)
