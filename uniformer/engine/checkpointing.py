"""Training checkpoints: atomic writes, ``weights_only``-safe contents, RNG state capture and restore.

A checkpoint is a plain dict of tensors and Python primitives (no pickled classes, no numpy arrays), so
``torch.load(weights_only=True)`` reads it. RNG states are stored as int64 tensors / ints:

    {"python": {"version", "state", "gauss"}, "numpy": {"keys", "pos", "has_gauss", "cached_gaussian"},
     "torch": ByteTensor, "cuda": [ByteTensor, ...], "data": ByteTensor (the data-order generator)}

Written through ``uniformer.io.atomic_path`` (temp file in the same folder, then rename): a run killed
while saving leaves the previous ``last.pth`` intact.
"""
import os
import random
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..io import atomic_path
from ..models.checkpoint import (CheckpointError, _describe_mismatch, extract_state_dict, inflate_state_dict,
                                read_checkpoint)

FORMAT = "uniformer-train/1"


def capture_rng_state(data_generator: Optional[torch.Generator] = None) -> Dict[str, Any]:
    """This process's RNG states (python, numpy, torch CPU, CUDA, and the data-order generator)."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    assert kind == "MT19937", kind
    state = {
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if data_generator is not None:
        state["data"] = data_generator.get_state()
    return state


def restore_rng_state(state: Dict[str, Any], data_generator: Optional[torch.Generator] = None) -> None:
    """Inverse of ``capture_rng_state``."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if data_generator is not None and "data" in state:
        data_generator.set_state(state["data"])


def save_checkpoint(path: os.PathLike, state: Dict[str, Any]) -> Path:
    """``torch.save(state)`` to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    return path


def load_training_checkpoint(path: os.PathLike) -> Dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from (a training run writes <out>/last.pth "
                              "after every epoch). Drop --resume to start a new run.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}); "
                              "it is not a checkpoint written by `uniformer train`.") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a `uniformer train` checkpoint (format {FORMAT!r} expected)")
    return obj


def is_training_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


CLASSIFIER_PREFIXES = ("head.", "head_cls.", "aux_head.")


def read_any_checkpoint(path: os.PathLike) -> Dict[str, Any]:
    """The raw contents of our or an official checkpoint (``.pth`` with ``weights_only=True``, ``.safetensors``)."""
    return read_checkpoint(os.fspath(path))


def checkpoint_state_dict(obj: Dict[str, Any], weights: str = "model") -> Tuple[Dict[str, torch.Tensor], str]:
    """(state dict, which weights) of a checkpoint object; see ``load_model_weights`` for ``weights``."""
    key, taken = None, "weights"
    if is_training_checkpoint(obj):
        use_ema = weights == "ema" or (weights == "auto" and obj.get("model_ema") is not None
                                       and bool((obj.get("config") or {}).get("eval_ema")))
        if use_ema and obj.get("model_ema") is None:
            raise CheckpointError("the checkpoint has no EMA weights (its run had model_ema off); use the model "
                                  "weights")
        key, taken = ("model_ema", "ema") if use_ema else ("model", "model")
    elif weights == "ema":
        key, taken = "model_ema", "ema"
    return extract_state_dict(obj, key), taken


def load_model_weights(model: torch.nn.Module, source, weights: str = "model", allow_new_head: bool = False,
                       inflate: Optional[str] = None) -> str:
    """Load ``source`` (a path, or a checkpoint already read) into ``model``: a ``uniformer train`` checkpoint (its
    ``model`` or ``model_ema`` entry) or any official checkpoint ``uniformer.load_checkpoint`` reads. Returns
    which weights were taken.

    ``weights``: ``model``, ``ema`` (error if absent) or ``auto`` (EMA when the run evaluated on its EMA).
    ``allow_new_head``: classifier weights of another shape (other number of classes) are left at their
    initialisation instead of failing (fine-tuning); every other key must match.
    ``inflate``: ``mean`` / ``center`` turn the 2D weights of an image checkpoint into the 3D ones of a video
    model (``models.uniformer_video.inflate_state_dict``; mean is the official rule); 3D weights pass as they are.
    """
    path = source if isinstance(source, (str, os.PathLike)) else "checkpoint"
    obj = read_any_checkpoint(source) if isinstance(source, (str, os.PathLike)) else source
    state_dict, taken = checkpoint_state_dict(obj, weights)
    state_dict = dict(state_dict)
    inflated = ""
    if inflate:
        before = {k: v.dim() for k, v in state_dict.items()}
        state_dict = dict(inflate_state_dict(state_dict, model, center=inflate == "center"))
        n = sum(1 for k, v in state_dict.items() if k in before and v.dim() != before[k])
        inflated = f", {n} tensors inflated 2D->3D ({inflate})" if n else ""
    own = model.state_dict()
    dropped = []
    if allow_new_head:
        dropped = [k for k in state_dict if k.startswith(CLASSIFIER_PREFIXES) and k in own
                   and tuple(state_dict[k].shape) != tuple(own[k].shape)]
        for k in dropped:
            del state_dict[k]
        # a head the checkpoint lacks (or the inflation dropped): kept at its initialisation
        dropped += [k for k in own if k.startswith(CLASSIFIER_PREFIXES) and k not in state_dict and k not in dropped]
    report = _describe_mismatch(model, {**state_dict, **{k: own[k] for k in dropped}})
    if report:
        name = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise CheckpointError(f"{path} does not match {name}:\n{report}\nCheck that the checkpoint belongs to this "
                              "model (variant, `_tl`, num_classes).")
    model.load_state_dict({**state_dict, **{k: own[k] for k in dropped}}, strict=True)
    return taken + inflated + (f" (new classifier: {', '.join(dropped)})" if dropped else "")
