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
"""
import json
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
from torchvision.transforms import functional as TF

from ..io import atomic_path, write_json
from .imagenet import ImageNetFolder, dataset_manifest_hash

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


# --- the label-map-aware image transform ------------------------------------------------------------------------
class TokenLabelTransform:
    """(PIL image, map) -> (normalised image tensor, map, crop box): the official ``transforms_imagenet_train``
    order: horizontal flip (image and map), colour jitter (image only), RandomResizedCrop (its box, normalised
    ``(x1, y1, x2, y2)`` of the flipped image, goes with the map), to tensor, normalise, random erasing."""

    def __init__(self, size: int, scale: Sequence[float], ratio: Sequence[float], hflip: float,
                 color_jitter: Optional[float], interpolation: str, mean, std, re_prob: float = 0.0,
                 re_mode: str = "pixel", re_count: int = 1):
        self.hflip = float(hflip)
        self.jitter = T.ColorJitter(*(float(color_jitter),) * 3) if color_jitter else None
        self.rrc = RandomResizedCropAndInterpolation(size, scale=tuple(scale), ratio=tuple(ratio),
                                                     interpolation=interpolation)
        self.to_tensor = T.Compose([T.ToTensor(), T.Normalize(mean=torch.tensor(mean), std=torch.tensor(std))])
        self.erase = RandomErasing(re_prob, mode=re_mode, max_count=re_count, device="cpu") if re_prob else None

    def __call__(self, img, label_map: torch.Tensor):
        if torch.rand(1) < self.hflip:
            img, label_map = TF.hflip(img), label_map.flip(-1)
        if self.jitter is not None:
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
    """The recipe's transform (``aa`` refused by ``ImageClassification.check_recipe``)."""
    return TokenLabelTransform(size, cfg["scale"], cfg["ratio"], cfg["hflip"], cfg["color_jitter"] or None,
                               cfg["train_interpolation"], mean, std, float(cfg["reprob"]), cfg["remode"],
                               int(cfg["recount"]))


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
