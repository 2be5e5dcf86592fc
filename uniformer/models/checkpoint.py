"""Loading official (and our own) UniFormer checkpoints.

The official trainers wrap the state dict differently (DeiT: ``model``; SlowFast: ``model_state``;
timm/OpenMMLab: ``state_dict``), and DDP runs prefix keys with ``module.``. Loading is
``strict=True`` by default and always ``torch.load(weights_only=True)``: a file that needs
arbitrary unpickling is refused rather than executed.
"""
import argparse
import os
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from safetensors.torch import load_file

WRAPPER_KEYS = ("model", "model_state", "state_dict", "model_ema", "state_dict_ema")
# The DeiT and timm trainers store their argparse.Namespace next to the weights; it is plain data
# (attribute dict), so it is allowed through weights_only loading. Nothing else is.
SAFE_GLOBALS = [argparse.Namespace]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model; the message says why and what to do."""


def read_checkpoint(path: str) -> dict:
    """The raw object of a ``.pth``/``.safetensors`` file, read without arbitrary unpickling."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file. Pass the path of a downloaded .pth file.")
    if path.endswith(".safetensors"):
        return load_file(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError or a corrupt/truncated file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(
                f"{path}: refused, it needs arbitrary unpickling ({msg}). Only tensors and plain containers are "
                "loaded (torch.load(weights_only=True)). If you trust the file, re-save its state dict: "
                "torch.save(torch.load(path, weights_only=False)['model'], 'clean.pth').") from e
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({msg}). "
                              "Is the download complete?") from e


def extract_state_dict(obj: Mapping, key: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Unwrap ``{'model': sd}`` / ``{'model_state': sd}`` / ``{'state_dict': sd}`` and strip ``module.`` prefixes."""
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"checkpoint has no '{key}' entry (it has: {sorted(obj)[:10]})")
        obj = obj[key]
    else:
        for k in WRAPPER_KEYS:
            if k in obj and isinstance(obj[k], Mapping):
                obj = obj[k]
                break
    state_dict = OrderedDict()
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue
        state_dict[k[len("module."):] if k.startswith("module.") else k] = v
    if not state_dict:
        raise CheckpointError(f"checkpoint holds no tensors under any of {WRAPPER_KEYS} nor at the top level")
    return state_dict


def _describe_mismatch(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str:
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    lines = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped keys", shapes)):
        if items:
            lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
    return "\n".join(lines)


def load_checkpoint(model: nn.Module, path: str, strict: bool = True, key: Optional[str] = None,
                    filter_fn=None) -> nn.Module:
    """Load an official or our own checkpoint into ``model``.

    Args:
        model: the model (unwrapped; a DDP wrapper is unwrapped here).
        path: ``.pth`` (any official wrapping) or ``.safetensors`` file.
        strict: require exactly the model's keys and shapes (default); on mismatch a
            ``CheckpointError`` lists the missing / unexpected / mis-shaped keys.
        key: take the state dict from this entry instead of auto-detecting.
        filter_fn: optional ``fn(state_dict, model) -> state_dict`` (e.g. inflation to 3D).
    """
    model = getattr(model, "module", model)
    state_dict = extract_state_dict(read_checkpoint(path), key)
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    report = _describe_mismatch(model, state_dict)
    if report and strict:
        name = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise CheckpointError(
            f"{path} does not match {name}:\n{report}\n"
            "Check that the checkpoint belongs to this model (e.g. head_dim 32 vs 64 variants, `_tl` for "
            "token-labelling files, num_classes), or pass strict=False to load the overlapping keys.")
    own = model.state_dict()
    compatible = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(compatible if not strict else state_dict, strict=strict)
    return model


# --- 2D -> 3D inflation ------------------------------------------------------------------------------
def inflate_weight(weight_2d: torch.Tensor, time_dim: int, center: bool = False) -> torch.Tensor:
    """(O, I, kh, kw) -> (O, I, time_dim, kh, kw): repeated and divided by time_dim (official default), or
    (``center=True``) placed in the middle temporal tap with zeros elsewhere."""
    if center:
        weight_3d = weight_2d.new_zeros(weight_2d.shape[:2] + (time_dim,) + weight_2d.shape[2:])
        weight_3d[:, :, time_dim // 2] = weight_2d
        return weight_3d
    return weight_2d.unsqueeze(2).repeat(1, 1, time_dim, *([1] * (weight_2d.dim() - 2))) / time_dim


def inflate_state_dict(state_dict: Dict[str, torch.Tensor], model: nn.Module,
                       center: bool = False) -> Dict[str, torch.Tensor]:
    """Adapt an image (2D) UniFormer state dict to a video model, as the official ``get_pretrained_model``.

    Every entry whose shape differs from the model's and whose 3D shape has more than 2 dims is inflated
    along a new time axis (dim 2): repeated and divided by the temporal kernel size, so a temporally
    constant input gives the 2D response away from the temporal borders. 1x1 convs become 1x1x1 (time 1).
    ``head.*`` (and ``head_cls.*`` of the light models) are dropped when the class count differs.
    Other mismatches are left as they are (``load_checkpoint`` reports them, or skips them with
    ``strict=False``). Use: ``load_checkpoint(model, "uniformer_small_in1k.pth", strict=False,
    filter_fn=inflate_state_dict)`` (strict=False because the dropped head is then missing).
    ``center=True`` is the official ``inflate_weight(center=True)`` variant (unused by the releases).
    """
    own = model.state_dict()
    out = OrderedDict()
    for k, v in state_dict.items():
        target = own.get(k)
        if target is not None and v.shape != target.shape and target.dim() > 2 and v.dim() == target.dim() - 1 \
                and v.shape[:2] == target.shape[:2] and v.shape[2:] == target.shape[3:]:
            v = inflate_weight(v, target.shape[2], center=center)
        out[k] = v
    for head in ("head", "head_cls"):
        w, target = out.get(f"{head}.weight"), own.get(f"{head}.weight")
        if w is not None and target is not None and w.shape[0] != target.shape[0]:
            del out[f"{head}.weight"]
            out.pop(f"{head}.bias", None)
    return out


# --- ImageNet weights into a dense backbone ----------------------------------------------------------------
CLASSIFIER_MODULES = ("norm", "head", "aux_head", "norm_cls", "head_cls")  # top-level modules of the classifiers


def load_into_dense_backbone(model: nn.Module, source, key: Optional[str] = None) -> Tuple[List[str], List[str]]:
    """Load an ImageNet classification checkpoint into a dense backbone, as the official detection /
    segmentation / pose code does (``mmcv_custom.load_checkpoint`` with ``strict=False``).

    The classifier's final ``norm`` (BatchNorm) and its heads (``head``, ``aux_head``, ``norm_cls``, ``head_cls``)
    are ignored; the dense output norms ``norm1..norm4`` keep their initialisation. Anything else that does
    not fit (another trunk, a mis-shaped tensor, a missing trunk key) raises ``CheckpointError``.

    Args:
        model: a dense backbone (``build_official('det_...')`` / ``build_dense``).
        source: a checkpoint path (any official wrapping) or a state dict.
    Returns:
        (ignored checkpoint keys, model keys left at their initialisation), both sorted.
    """
    model = getattr(model, "module", model)
    state_dict = extract_state_dict(read_checkpoint(source) if isinstance(source, (str, os.PathLike)) else source, key)
    own = model.state_dict()
    ignored = sorted(k for k in state_dict if k not in own and k.split(".")[0] in CLASSIFIER_MODULES)
    fresh = sorted(k for k in own if k not in state_dict and k.split(".")[0] in _dense_norms(own))
    trunk = {k: v for k, v in state_dict.items() if k not in ignored}
    report = _describe_mismatch(_KeysOnly(own, exclude=fresh), trunk)
    if report:
        raise CheckpointError(f"the checkpoint does not fit the dense backbone's trunk:\n{report}\nIs it the "
                              "ImageNet checkpoint of the same size (S / B / XXS / XS)?")
    model.load_state_dict(trunk, strict=False)
    return ignored, fresh


def _dense_norms(own: Iterable[str]) -> set:
    return {f"norm{i}" for i in range(1, 5)} & {k.split(".")[0] for k in own}


class _KeysOnly:
    """A ``state_dict()`` view without some keys (for ``_describe_mismatch``)."""

    def __init__(self, own: Mapping[str, torch.Tensor], exclude: Iterable[str]):
        self._own = {k: v for k, v in own.items() if k not in set(exclude)}

    def state_dict(self):
        return self._own
