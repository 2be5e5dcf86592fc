"""The building blocks of every UniFormer, one definition for images (2D) and videos (3D).

``ndim`` (2 or 3) picks Conv2d/Conv3d, BatchNorm2d/3d and the pooling; everything else is shared.
Module and parameter names follow the official checkpoints exactly (``pos_embed``, ``norm1``,
``conv1``, ``attn``, ``conv2``, ``norm2``, ``mlp.fc1``, ``gamma_1`` ...), so that an official
``.pth`` loads with ``strict=True``. Layer scale is a constructor argument, never a module-level flag.

Token mixers (the per-stage spec of ``backbone.UniFormer``):

* ``LocalBlock``: local MHRA (BN, 1x1, depthwise 5x5(x5), 1x1), stages 1-2 everywhere;
* ``GlobalBlock``: global MHRA over all tokens, or with ``window_size`` over non-overlapping windows
  (dense backbones; the official zero-pad rule);
* ``PrunedGlobalBlock``: the light models' global MHRA on [class token, informative tokens,
  representative token] (token mixer adapted from Evo-ViT).
"""
import contextlib
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_, use_fused_attn

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
BATCHNORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class Attention(nn.Module):
    """Multi-head self-attention over (B, N, C) tokens (global MHRA's token mixer).

    ``fused_attn`` picks ``F.scaled_dot_product_attention``; otherwise the explicit
    softmax(q k^T * scale) v is used. Both compute the same function.
    ``attn_fp32=True`` is the official ``*_fp32`` option of the light video models: the attention math
    (q k^T, softmax, class attention, attn v) runs with autocast disabled, ``qkv`` and ``proj`` still under
    autocast. Like the official code it does not up-cast q, k, v (under fp16/bf16 autocast they arrive in
    half precision; only autocast's re-casting, e.g. of softmax, is turned off). Outside autocast it changes nothing.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, attn_fp32: bool = False):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} is not divisible by num_heads {num_heads}"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = use_fused_attn()
        self.attn_fp32 = attn_fp32
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _math_ctx(self, x: torch.Tensor):
        if self.attn_fp32 and torch.is_autocast_enabled(x.device.type):
            return torch.autocast(x.device.type, enabled=False)
        return contextlib.nullcontext()

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
        with self._math_ctx(x):
            out = self._attend(q, k, v)
        return self._out(out, B, N, C)

    def forward_with_cls_attn(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Also return the head-averaged attention of token 0 (the class token) to every token.

        Used by the light models' token pruning. The class-token row is recomputed with an
        element-wise product + sum (not a matmul) so the fused path stays fused and FLOP counters
        see the same matmuls as the official code.
        """
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        with self._math_ctx(x):
            if self.fused_attn:
                cls_attn = ((q[:, :, :1] * k).sum(-1) * self.scale).softmax(dim=-1)  # (B, H, N)
                out = self._attend(q, k, v)
            else:
                attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
                cls_attn = attn[:, :, 0]
                out = self.attn_drop(attn) @ v
            cls_attn = cls_attn.mean(dim=1)
        return self._out(out, B, N, C), cls_attn


class ConvMlp(nn.Module):
    """The local blocks' MLP: 1x1(x1) conv -> GELU -> 1x1(x1) conv (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, ndim: int = 2):
        super().__init__()
        self.fc1 = CONV[ndim](dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = CONV[ndim](hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def layer_scale(dim: int, init_values: Optional[float], shape=()) -> Optional[nn.Parameter]:
    """``gamma`` of shape (dim, *shape) or None without layer scale."""
    return None if init_values is None else nn.Parameter(init_values * torch.ones(dim, *shape))


def _scaled(y: torch.Tensor, gamma: Optional[torch.Tensor]) -> torch.Tensor:
    return y if gamma is None else gamma * y


class LocalBlock(nn.Module):
    """Local MHRA block ("CBlock"): DPE (dw 3x3(x3)), BN -> 1x1 -> dw 5x5(x5) -> 1x1, BN -> conv MLP.

    Layer scale (``init_values``) gives ``gamma_1``/``gamma_2`` of shape (1, C, 1, 1) / (1, C, 1, 1, 1), as in
    the token-labelling UniFormer-L and the ``_ls_fp32`` light video checkpoints.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0,
                 init_values: Optional[float] = None, ndim: int = 2):
        super().__init__()
        conv = CONV[ndim]
        self.pos_embed = conv(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = BATCHNORM[ndim](dim)
        self.conv1 = conv(dim, dim, 1)
        self.conv2 = conv(dim, dim, 1)
        self.attn = conv(dim, dim, 5, padding=2, groups=dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = BATCHNORM[ndim](dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop=drop, ndim=ndim)
        if init_values is not None:  # broadcast over (C, *spatial); the leading 1 is the official shape
            self.gamma_1 = nn.Parameter(init_values * torch.ones(1, dim, *([1] * ndim)))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(1, dim, *([1] * ndim)))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(_scaled(self.conv2(self.attn(self.conv1(self.norm1(x)))), self.gamma_1))
        x = x + self.drop_path(_scaled(self.mlp(self.norm2(x)), self.gamma_2))
        return x


class GlobalBlock(nn.Module):
    """Global MHRA block ("SABlock"): DPE, LN -> self-attention, LN -> MLP; layer scale gives (C,) gammas.

    ``window_size`` > 0 (2D dense backbones): attention inside non-overlapping windows. The official rule:
    the normalised map is zero-padded bottom/right to a multiple of the window (padded tokens take part in
    the attention, no mask), DPE runs on the unpadded map and the MLP on the unpadded tokens.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, init_values: Optional[float] = None,
                 ndim: int = 2, attn_fp32: bool = False, window_size: int = 0):
        super().__init__()
        assert window_size == 0 or ndim == 2, "window attention is 2D only (dense backbones)"
        self.window_size = window_size
        self.pos_embed = CONV[ndim](dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop,
                              attn_fp32=attn_fp32)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)
        self.gamma_1 = layer_scale(dim, init_values)
        self.gamma_2 = layer_scale(dim, init_values)

    def _window_attn(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """Attention of normalised tokens (B, H*W, C) inside w x w windows of the zero-padded map."""
        B, _, C = x.shape
        w = self.window_size
        pad_h, pad_w = (w - H % w) % w, (w - W % w) % w
        x = F.pad(x.reshape(B, H, W, C), (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w
        x = x.reshape(B, Hp // w, w, Wp // w, w, C).transpose(2, 3).reshape(-1, w * w, C)
        x = self.attn(x).reshape(B, Hp // w, Wp // w, w, w, C).transpose(2, 3).reshape(B, Hp, Wp, C)
        return x[:, :H, :W].reshape(B, H * W, C)

    def forward_tokens(self, x: torch.Tensor, spatial=None) -> torch.Tensor:
        y = self.norm1(x)
        y = self._window_attn(y, *spatial) if self.window_size else self.attn(y)
        x = x + self.drop_path(_scaled(y, self.gamma_1))
        x = x + self.drop_path(_scaled(self.mlp(self.norm2(x)), self.gamma_2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        shape = x.shape  # (B, C, H, W) or (B, C, T, H, W)
        x = self.forward_tokens(x.flatten(2).transpose(1, 2), shape[2:])
        return x.transpose(1, 2).reshape(shape)


def _gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, C) or (B, N), index (B, M) -> the indexed tokens (B, M, C) or (B, M)."""
    if x.dim() == 2:
        return torch.gather(x, 1, index)
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class PrunedGlobalBlock(GlobalBlock):
    """Global MHRA on [class token, informative tokens, representative token] ("EvoSABlock").

    A running importance score per patch token (head-averaged class attention) picks the top ``keep_ratio``
    tokens; the rest are collapsed into one score-weighted representative token, whose residual update is
    broadcast back to every dropped token. The score is passed between blocks explicitly (not through
    module globals as in the official code) and token positions are integer indices (exact under bf16).

    Args (besides GlobalBlock's):
        keep_ratio: fraction of patch tokens processed (1 = all tokens, no pruning).
        trade_off: weight of this block's class attention in the running score.
        pool_score: average-pool the score map (2x2, or (1, 2, 2) in 3D) at the end (last block before a
            downsampling), rescaled to keep its sum.
        fast_gamma: image flavour with layer scale: the dropped tokens' fast update is the UNscaled
            residual times its own ``gamma_3`` (absent in every released checkpoint); otherwise (the video
            ``_ls_fp32`` flavour) it is the layer-scaled residual gamma_1 * attn + gamma_2 * mlp.
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop=0.0, attn_drop=0.0, drop_path=0.0,
                 init_values=None, ndim: int = 2, attn_fp32: bool = False, keep_ratio: float = 1.0,
                 trade_off: float = 0.0, pool_score: bool = False, fast_gamma: bool = False):
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, drop_path, init_values, ndim=ndim,
                         attn_fp32=attn_fp32)
        self.ndim = ndim
        self.keep_ratio = keep_ratio
        self.trade_off = trade_off
        self.pool_score = pool_score
        self.gamma_3 = layer_scale(dim, init_values if fast_gamma and keep_ratio != 1 else None)

    def _update_score(self, score: Optional[torch.Tensor], cls_attn: torch.Tensor) -> torch.Tensor:
        if score is None:  # first block: the score is the class attention itself
            return cls_attn
        return (1 - self.trade_off) * score + self.trade_off * cls_attn

    def _residual(self, y: torch.Tensor, gamma: Optional[torch.Tensor]):
        """(residual update, its share of the representative token's fast update)."""
        r = _scaled(y, gamma)
        return r, (y if self.gamma_3 is not None else r)[:, -1:]

    def _pruned(self, tokens: torch.Tensor, cls_token: torch.Tensor, score: torch.Tensor):
        N = tokens.shape[1]
        n_keep = int(N * self.keep_ratio)
        order = torch.argsort(score, dim=1, descending=True)
        sorted_tokens, sorted_score = _gather_tokens(tokens, order), _gather_tokens(score, order)
        keep, dropped = sorted_tokens[:, :n_keep], sorted_tokens[:, n_keep:]
        drop_score = sorted_score[:, n_keep:]
        weight = drop_score / drop_score.sum(dim=1, keepdim=True)
        rep_token = (weight.unsqueeze(-1) * dropped).sum(dim=1, keepdim=True)

        t = torch.cat([cls_token, keep, rep_token], dim=1)
        y, cls_attn = self.attn.forward_with_cls_attn(self.norm1(t))
        if N - n_keep == 1:  # official edge case: the representative token is the one dropped token
            sorted_score = self._update_score(sorted_score, cls_attn[:, 1:])
        else:  # only the informative tokens' scores move
            sorted_score = torch.cat(
                [self._update_score(sorted_score[:, :n_keep], cls_attn[:, 1:-1]), sorted_score[:, n_keep:]], dim=1)
        r, fast_update = self._residual(y, self.gamma_1)
        t = t + self.drop_path(r)
        r, fast_mlp = self._residual(self.mlp(self.norm2(t)), self.gamma_2)
        t = t + self.drop_path(r)
        fast_update = _scaled(fast_update + fast_mlp, self.gamma_3)
        dropped = dropped + fast_update.expand(-1, N - n_keep, -1)

        restore = torch.argsort(order, dim=1)
        tokens = _gather_tokens(torch.cat([t[:, 1:-1], dropped], dim=1), restore)
        return tokens, t[:, :1], _gather_tokens(sorted_score, restore)

    def forward(self, x: torch.Tensor, cls_token: torch.Tensor, score: Optional[torch.Tensor]):
        """x (B, C, *spatial), cls_token (B, 1, C), score None or (B, N) in token order -> the same three."""
        x = x + self.pos_embed(x)
        shape = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        if self.keep_ratio == 1:
            t = torch.cat([cls_token, tokens], dim=1)
            y, cls_attn = self.attn.forward_with_cls_attn(self.norm1(t))
            score = self._update_score(score, cls_attn[:, 1:])
            t = t + self.drop_path(_scaled(y, self.gamma_1))
            t = t + self.drop_path(_scaled(self.mlp(self.norm2(t)), self.gamma_2))
            cls_token, tokens = t[:, :1], t[:, 1:]
        else:
            assert score is not None, "a pruned block needs the running token score of a previous block"
            tokens, cls_token, score = self._pruned(tokens, cls_token, score)
        x = tokens.transpose(1, 2).reshape(shape)
        if self.pool_score:  # reuse the score at the next stage's resolution; keep its sum
            total = score.sum(dim=1, keepdim=True)
            pool = F.avg_pool2d if self.ndim == 2 else F.avg_pool3d
            kernel = (2, 2) if self.ndim == 2 else (1, 2, 2)
            score = pool(score.reshape(shape[0], 1, *shape[2:]), kernel_size=kernel, stride=kernel).flatten(1)
            score = score * (total / score.sum(dim=1, keepdim=True))
        return x, cls_token, score


# --- stage entries ----------------------------------------------------------------------------------------
class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels (dim 1) of a (B, C, *spatial) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.movedim(1, -1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding: conv (kernel, stride, padding), then LayerNorm over channels (eps 1e-5)."""

    def __init__(self, in_chans: int, embed_dim: int, kernel_size, stride, padding=0, ndim: int = 2):
        super().__init__()
        self.proj = CONV[ndim](in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)
        self.norm = ChannelLayerNorm(embed_dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class ConvStem(nn.Module):
    """Overlapping stride-4 stem of S-dagger and the light models: two 3x3(x3) convs with BN, GELU between.

    3D (light video): strides (1, 2, 2) then (2, 2, 2), the light models' only temporal downsampling.
    """

    def __init__(self, in_chans: int, embed_dim: int, ndim: int = 2):
        super().__init__()
        conv, bn = CONV[ndim], BATCHNORM[ndim]
        s1, s2 = (2, 2) if ndim == 2 else ((1, 2, 2), (2, 2, 2))
        self.proj = nn.Sequential(
            conv(in_chans, embed_dim // 2, 3, stride=s1, padding=1),
            bn(embed_dim // 2),
            nn.GELU(),
            conv(embed_dim // 2, embed_dim, 3, stride=s2, padding=1),
            bn(embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ConvDownsample(nn.Module):
    """Overlapping stride-2 downsampling of S-dagger: 3x3/2 conv + BN."""

    def __init__(self, in_chans: int, embed_dim: int, ndim: int = 2):
        super().__init__()
        self.proj = nn.Sequential(CONV[ndim](in_chans, embed_dim, 3, stride=2, padding=1), BATCHNORM[ndim](embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def make_patch_embeds(in_chans: int, embed_dim, conv_stem: bool, conv_downsample: bool, ndim: int = 2) -> list:
    """The four stage-entry embeddings (spatial stride 4, 2, 2, 2).

    Video (3D): the patch stem is (3, 4, 4)/(2, 4, 4) with temporal padding 1 (T -> T/2, the only temporal
    downsampling) and the downsamplings are (1, 2, 2)/(1, 2, 2).
    """
    assert not (conv_downsample and ndim == 3), "no 3D model downsamples with convs"
    if conv_stem:
        first = ConvStem(in_chans, embed_dim[0], ndim)
    elif ndim == 2:
        first = PatchEmbed(in_chans, embed_dim[0], 4, 4)
    else:
        first = PatchEmbed(in_chans, embed_dim[0], (3, 4, 4), (2, 4, 4), (1, 0, 0), ndim=3)
    down = 2 if ndim == 2 else (1, 2, 2)
    rest = [ConvDownsample(embed_dim[i - 1], embed_dim[i]) if conv_downsample
            else PatchEmbed(embed_dim[i - 1], embed_dim[i], down, down, ndim=ndim) for i in range(1, 4)]
    return [first, *rest]


def drop_path_rates(depth, drop_path_rate: float):
    """Stochastic depth grows linearly over all blocks of all stages; returns one list per stage."""
    dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depth), device="cpu")]  # CPU: also under a meta device
    out, start = [], 0
    for d in depth:
        out.append(dpr[start:start + d])
        start += d
    return out


def init_weights(module: nn.Module) -> None:
    """Official init: trunc-normal(0.02) Linear weights with zero bias, LayerNorm (1, 0); convs keep PyTorch defaults."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
