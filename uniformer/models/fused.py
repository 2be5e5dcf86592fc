"""Per-model switch between the fused (SDPA) and the explicit-matmul attention paths."""
import torch.nn as nn

from .blocks import Attention


def set_fused_attn(model: nn.Module, enable: bool = True) -> nn.Module:
    """Set every attention module of ``model`` to SDPA (True) or explicit softmax(qk^T)v (False).

    timm's ``timm.layers.set_fused_attn`` sets the default for models built afterwards; this flips an
    existing model without touching any global state.
    """
    for m in model.modules():
        if isinstance(m, Attention):
            m.fused_attn = enable
    return model
