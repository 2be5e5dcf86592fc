"""Loading official (and our own) UniFormer checkpoints.

The official trainers wrap the state dict differently (DeiT: ``model``; SlowFast: ``model_state``;
timm/OpenMMLab: ``state_dict``), and DDP runs prefix keys with ``module.``. Loading is
``strict=True`` by default and always ``torch.load(weights_only=True)``: a file that needs
arbitrary unpickling is refused rather than executed.
"""
import argparse
import os
from collections import OrderedDict
from typing import Dict, Mapping, Optional

import torch
import torch.nn as nn

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
        from safetensors.torch import load_file
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
