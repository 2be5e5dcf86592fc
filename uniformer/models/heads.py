"""The heads on top of the UniFormer trunk, kept apart from it (``backbone.UniFormer`` composes them).

Their parameters sit at the model's top level under the official names (``norm``, ``head``,
``aux_head``, ``norm_cls``, ``head_cls``, ``norm1..norm4``), so that official checkpoints load as they are:

* ``linear``: BatchNorm ``norm`` on the last map, global average pool, ``head`` (all classifiers);
* ``token_label``: plus ``aux_head`` on every stage-4 token and MixToken (token-labelling models);
* ``class_token``: plus ``norm_cls`` + ``head_cls`` on the class token of the light models (training only);
* ``dense``: no classifier; a LayerNorm ``norm{i}`` on each stage output (detection/segmentation/pose).
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn

from .blocks import BATCHNORM, ChannelLayerNorm

HEADS = ("linear", "token_label", "class_token", "dense")


def linear(in_features: int, num_classes: int) -> nn.Module:
    return nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()


def make_heads(kind: str, embed_dim, num_classes: int, ndim: int) -> dict:
    """{attribute name: module} of a head kind, in the official registration order."""
    assert kind in HEADS, kind
    if kind == "dense":  # official dense backbones: LayerNorm (eps 1e-6) over the channels of each stage output
        return {f"norm{i + 1}": ChannelLayerNorm(d, eps=1e-6) for i, d in enumerate(embed_dim)}
    c = embed_dim[-1]
    heads = dict(norm=BATCHNORM[ndim](c))
    if kind == "class_token":
        heads["norm_cls"] = nn.LayerNorm(c)
    heads["head"] = linear(c, num_classes)
    if kind == "class_token":
        heads["head_cls"] = linear(c, num_classes)
    if kind == "token_label":
        heads["aux_head"] = linear(c, num_classes)
    return heads


def class_token_logits(norm_cls: nn.Module, head_cls: nn.Module, logits: torch.Tensor,
                       cls_token: Optional[torch.Tensor], training: bool):
    """Light models: in training also the class-token logits (the official recipe averages both losses)."""
    if training and cls_token is not None:
        return logits, head_cls(norm_cls(cls_token).squeeze(1))
    return logits


def token_label_logits(aux_head: nn.Module, logits: torch.Tensor, tokens: torch.Tensor, hw,
                       mix_box: Optional[Tuple[int, int, int, int]], training: bool):
    """Token labelling: eval -> class logits + 0.5 x the strongest token's logits; training -> (class logits,
    per-token logits with MixToken undone, MixToken box)."""
    aux = aux_head(tokens)
    if not training:
        return logits + 0.5 * aux.max(dim=1)[0]
    return logits, unmix_tokens(aux, hw, mix_box), mix_box


def mix_tokens(x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int, int, int]]:
    """MixToken: swap a random box of stage-1 tokens with the flipped batch (lambda ~ Beta(1, 1)), as the official
    TL code. Uses torch's RNG (not numpy's), so a seeded run is reproducible."""
    H, W = x.shape[-2:]
    lam = torch.distributions.Beta(1.0, 1.0).sample().item()
    cut = (1.0 - lam) ** 0.5
    cut_h, cut_w = int(H * cut), int(W * cut)
    cy, cx = int(torch.randint(H, (1,))), int(torch.randint(W, (1,)))
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, H)
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, W)
    mixed = x.clone()
    mixed[:, :, y1:y2, x1:x2] = x.flip(0)[:, :, y1:y2, x1:x2]
    return mixed, (y1, x1, y2, x2)


def unmix_tokens(aux: torch.Tensor, hw, mix_box) -> torch.Tensor:
    """Undo MixToken on the per-token logits (stage 4 is 8x coarser than stage 1)."""
    if mix_box is None:
        return aux
    y1, x1, y2, x2 = (v // 8 for v in mix_box)
    B, N, K = aux.shape
    grid = aux.reshape(B, hw[0], hw[1], K)
    out = grid.clone()
    out[:, y1:y2, x1:x2] = grid.flip(0)[:, y1:y2, x1:x2]
    return out.reshape(B, N, K)
