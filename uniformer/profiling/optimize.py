"""Inference-time rewrites of a UniFormer: BatchNorm folding, precision, memory format, torch.compile.

Used by ``uniformer profile`` (``--precision/--channels-last/--compile/--fold-bn``), the benchmark script
and (later) ``uniformer eval``. Every function returns a new eval-mode model; the input model is untouched.
"""
import copy
from typing import Optional

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..models import LocalBlock, UniFormer, set_fused_attn
from .machine import DTYPES


def _bn_scale_shift(bn: nn.BatchNorm2d):
    """Eval BN as y = x * s + t (per channel)."""
    s = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        s = s * bn.weight
    t = -bn.running_mean * s
    if bn.bias is not None:
        t = t + bn.bias
    return s, t


@torch.no_grad()
def fold_bn_into_following(bn: nn.BatchNorm2d, layer: nn.Module) -> None:
    """Fold ``bn`` into the 1x1 conv / linear ``layer`` that consumes its output: layer(bn(x)) == layer'(x).

    Exact only for a 1x1 conv without padding or a per-channel linear (with a kxk zero-padded conv the
    border would see BN's shift where it sees zeros), hence the check.
    """
    if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
        assert set(layer.kernel_size) == {1} and layer.groups == 1 and not any(layer.padding), layer
    else:
        assert isinstance(layer, nn.Linear), layer
    s, t = _bn_scale_shift(bn)
    w = layer.weight.reshape(layer.weight.shape[0], -1)  # (out, in)
    bias = w @ t + (layer.bias if layer.bias is not None else 0)
    layer.weight.mul_(s.reshape(1, -1, *([1] * (layer.weight.dim() - 2))))
    if layer.bias is None:
        layer.bias = nn.Parameter(bias)
    else:
        layer.bias.copy_(bias)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Eval copy of ``model`` with every BatchNorm merged into a neighbouring conv / linear.

    * local blocks: ``norm1`` -> 1x1 ``conv1`` and ``norm2`` -> 1x1 ``mlp.fc1`` (BN precedes the conv,
      x -> conv(bn(x)) is one affine map);
    * conv stem / downsampling (S-dagger, light models): conv -> BN, the classic fold into the conv;
    * final ``norm`` of the classifiers: BN -> average pool -> ``head`` (and the token-labelling
      ``aux_head``, which reads every normalised token): a per-channel affine commutes with the pool.
      The copy is then for class logits only (its ``forward_intermediates(norm=True)`` is unnormalised).
    """
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if isinstance(m, LocalBlock):
            fold_bn_into_following(m.norm1, m.conv1)
            fold_bn_into_following(m.norm2, m.mlp.fc1)
            m.norm1, m.norm2 = nn.Identity(), nn.Identity()
        elif isinstance(m, nn.Sequential):
            for i in range(len(m) - 1):
                if isinstance(m[i], (nn.Conv2d, nn.Conv3d)) and isinstance(m[i + 1], nn.modules.batchnorm._BatchNorm):
                    m[i], m[i + 1] = fuse_conv_bn_eval(m[i], m[i + 1]), nn.Identity()
    if isinstance(model, UniFormer) and isinstance(getattr(model, "norm", None), nn.modules.batchnorm._BatchNorm) \
            and model.global_pool == "avg" and isinstance(model.head, nn.Linear):
        heads = [model.head] + ([model.aux_head] if isinstance(getattr(model, "aux_head", None), nn.Linear) else [])
        for head in heads:
            fold_bn_into_following(model.norm, head)
        model.norm = nn.Identity()
    return model


class InferenceModel(nn.Module):
    """Runs ``model`` on fp32 NCHW images in the chosen dtype / memory format and returns fp32 logits.

    Keeps callers (profile, eval, benchmarks) free of per-precision input handling.
    """

    def __init__(self, model: nn.Module, precision: str = "fp32", cast_weights: bool = False,
                 channels_last: bool = False):
        super().__init__()
        self.model = model
        self.precision = precision
        self.cast_weights = cast_weights
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = DTYPES[self.precision]
        if self.cast_weights:
            x = x.to(dtype)
        with torch.autocast(x.device.type, dtype=dtype, enabled=self.precision != "fp32" and not self.cast_weights):
            out = self.model(x)
        return out.float()


def optimize_for_inference(model: nn.Module, precision: str = "fp32", channels_last: bool = False,
                           compile: bool = False, fold_bn: bool = True, cast_weights: bool = True,
                           fused_attn: Optional[bool] = True, device=None) -> InferenceModel:
    """Eval-mode ``InferenceModel`` around a rewritten copy of ``model``.

    precision: fp32 | bf16 | fp16. With ``cast_weights`` the weights and activations are stored in that
    dtype (fastest on CPUs with native bf16 matmuls, AMX / AVX512-BF16); otherwise ``torch.autocast``
    runs convs and matmuls in it and keeps the rest fp32.
    fold_bn: ``fold_batchnorm`` (done in fp32, before any cast). fused_attn: SDPA (True), explicit
    matmuls (False), or leave the model's setting (None). compile: ``torch.compile`` of the network
    (the first call per input shape compiles).
    """
    assert precision in DTYPES, precision
    m = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    if fused_attn is not None:
        set_fused_attn(m, fused_attn)
    if device is not None:
        m = m.to(device)
    cast = cast_weights and precision != "fp32"
    if cast:
        m = m.to(DTYPES[precision])
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    if compile:
        m = torch.compile(m)
    return InferenceModel(m, precision, cast, channels_last).eval()
