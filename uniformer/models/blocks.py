"""Building blocks shared by every 2D UniFormer (image and dense backbones).

Module and parameter names follow the official checkpoints exactly (``pos_embed``, ``norm1``,
``conv1``, ``attn``, ``conv2``, ``norm2``, ``mlp.fc1``, ``gamma_1`` ...), so that an official
``.pth`` loads with ``strict=True``. The layer-scale switch is a constructor argument, never a
module-level flag.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, Mlp, use_fused_attn


class Attention(nn.Module):
    """Multi-head self-attention over (B, N, C) tokens (global MHRA's token mixer).

    ``fused_attn`` picks ``F.scaled_dot_product_attention``; otherwise the explicit
    softmax(q k^T * scale) v is used. Both compute the same function.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} is not divisible by num_heads {num_heads}"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = use_fused_attn()
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _qkv(self, x: torch.Tensor):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def _attend(self, q, k, v):
        if self.fused_attn:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = self.attn_drop(attn.softmax(dim=-1))
        return attn @ v

    def _out(self, x: torch.Tensor, B: int, N: int, C: int) -> torch.Tensor:
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        return self._out(self._attend(q, k, v), B, N, C)

    def forward_with_cls_attn(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Also return the head-averaged attention of token 0 (the class token) to every token.

        Used by the light models' token pruning. The class-token row is recomputed with an
        element-wise product + sum (not a matmul) so the fused path stays fused and FLOP counters
        see the same matmuls as the official code.
        """
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        if self.fused_attn:
            cls_logits = (q[:, :, :1] * k).sum(-1) * self.scale  # (B, H, N)
            cls_attn = cls_logits.softmax(dim=-1)
            out = self._attend(q, k, v)
        else:
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            cls_attn = attn[:, :, 0]
            out = self.attn_drop(attn) @ v
        return self._out(out, B, N, C), cls_attn.mean(dim=1)


class LocalBlock(nn.Module):
    """Local MHRA block ("CBlock"): DPE, BN -> 1x1 -> depthwise 5x5 -> 1x1, BN -> conv MLP.

    Layer scale (``init_values``) gives ``gamma_1``/``gamma_2`` of shape (1, C, 1, 1) as in the
    token-labelling UniFormer-L checkpoint.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0,
                 init_values: Optional[float] = None):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop, use_conv=True)
        if init_values is not None:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(1, dim, 1, 1))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(1, dim, 1, 1))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        y = self.conv2(self.attn(self.conv1(self.norm1(x))))
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        x = x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)
        return x


class GlobalBlock(nn.Module):
    """Global MHRA block ("SABlock"): DPE, LN -> self-attention over all tokens, LN -> MLP.

    Works on (B, C, H, W) maps, or on (B, C, T, H, W) with ``conv_layer=nn.Conv3d`` (video); layer scale gives
    ``gamma_1``/``gamma_2`` of shape (C,).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, init_values: Optional[float] = None,
                 conv_layer=nn.Conv2d, attn_layer=None):
        super().__init__()
        self.pos_embed = conv_layer(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = (attn_layer or Attention)(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)
        if init_values is not None:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.norm1(x))
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        x = x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        shape = x.shape  # (B, C, H, W) or (B, C, T, H, W)
        x = self.forward_tokens(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(shape)


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding: conv k=s=patch_size, then LayerNorm over channels (eps 1e-5)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = LayerNorm2d(embed_dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class ConvStem(nn.Module):
    """Overlapping stride-4 stem of S-dagger and the light models: two 3x3/2 convs with BN (+GELU between)."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim // 2, 3, stride=2, padding=1),
            nn.BatchNorm2d(embed_dim // 2),
            nn.GELU(),
            nn.Conv2d(embed_dim // 2, embed_dim, 3, stride=2, padding=1),
            nn.BatchNorm2d(embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ConvDownsample(nn.Module):
    """Overlapping stride-2 downsampling of S-dagger: 3x3/2 conv + BN."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_chans, embed_dim, 3, stride=2, padding=1), nn.BatchNorm2d(embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def make_patch_embeds(in_chans: int, embed_dim, conv_stem: bool, conv_downsample: bool) -> nn.ModuleList:
    """The four stage-entry embeddings (stride 4, 2, 2, 2)."""
    first = ConvStem(in_chans, embed_dim[0]) if conv_stem else PatchEmbed(in_chans, embed_dim[0], 4)
    rest = [
        ConvDownsample(embed_dim[i - 1], embed_dim[i]) if conv_downsample else PatchEmbed(embed_dim[i - 1], embed_dim[i], 2)
        for i in range(1, 4)
    ]
    return nn.ModuleList([first, *rest])


def drop_path_rates(depth, drop_path_rate: float):
    """Stochastic depth grows linearly over all blocks of all stages; returns one list per stage."""
    dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depth))]
    out, start = [], 0
    for d in depth:
        out.append(dpr[start:start + d])
        start += d
    return out


def init_weights(module: nn.Module) -> None:
    """Official init: trunc-normal(0.02) Linear weights with zero bias, LayerNorm (1, 0); convs keep PyTorch defaults."""
    from timm.layers import trunc_normal_

    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
