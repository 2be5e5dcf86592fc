"""Light ("hourglass") UniFormer video classifiers: UniFormer-XXS / XS for Kinetics-400.

The official ``Uniformer_light``, ``Uniformer_light_fp32`` and ``Uniformer_light_ls_fp32``
(``video_classification/slowfast/models/uniformer_light*.py``) in one class:

* ``_fp32`` only runs the attention math with autocast disabled: here the option ``attn_fp32=True``
  (same weights; no effect outside autocast). A tagged model (``uniformer_xxs_video.k400_16f_160``)
  defaults to the flavour its checkpoint was trained with.
* ``_ls_fp32`` adds layer scale to every block (local (1, C, 1, 1, 1), global (C,)); registered as
  ``uniformer_xxs_ls_video``. In its pruned blocks the dropped tokens' fast update is the
  layer-scaled residual of the representative token (gamma_1 * attn + gamma_2 * mlp); no gamma_3.

Design as the light image model, in 3D: two-conv BN stem 3x3x3 /(1, 2, 2) -> BN3d -> GELU -> 3x3x3
/(2, 2, 2) -> BN3d (temporal /2 only here), (1, 2, 2) patch embeddings, local blocks in stages 1-2,
token-pruned global blocks (class token, running importance score, one representative token for the
dropped ones) over all T*H*W tokens in stages 3-4; the last stage-3 block average-pools the score
(1, 2, 2) for stage 4. The pruning state is passed explicitly (no module globals) and token
positions are integer indices.

The released configs set ``MLP_RATIO: 3`` (an int the official light classes cannot index; all
ratios are 3 here) and ``INIT_VALUE: 0.1`` (the default of ``uniformer_xxs_ls_video``).
"""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import register_model
from timm.models._features import feature_take_indices

from .blocks import drop_path_rates, init_weights
from .uniformer_video import GlobalBlock3d, LocalBlock3d, build_video_model, downsample_embeds, unwrap_clip
from .video_catalog import generate_video_default_cfgs

__all__ = ["UniFormerVideoLight", "PrunedGlobalBlock3d"]


def _gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, C) or (B, N), index (B, M) -> the indexed tokens (B, M, C) or (B, M)."""
    if x.dim() == 2:
        return torch.gather(x, 1, index)
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class ConvStem3d(nn.Module):
    """Light stem: Conv3d 3x3x3 /(1,2,2) -> BN3d -> GELU -> Conv3d 3x3x3 /(2,2,2) -> BN3d (keys proj.0/1/3/4)."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv3d(in_chans, embed_dim // 2, 3, stride=(1, 2, 2), padding=1),
            nn.BatchNorm3d(embed_dim // 2),
            nn.GELU(),
            nn.Conv3d(embed_dim // 2, embed_dim, 3, stride=(2, 2, 2), padding=1),
            nn.BatchNorm3d(embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class PrunedGlobalBlock3d(GlobalBlock3d):
    """Global MHRA on [class token, informative tokens, representative token] over T*H*W tokens ("EvoSABlock").

    Args (besides GlobalBlock3d's):
        keep_ratio: fraction of patch tokens processed (1 = all tokens, no pruning).
        trade_off: weight of this block's class attention in the running score.
        pool_score: average-pool the score map (1, 2, 2) at the end (last block before stage 4).
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop=0.0, attn_drop=0.0, drop_path=0.0,
                 init_values=None, attn_fp32=False, keep_ratio: float = 1.0, trade_off: float = 0.0,
                 pool_score: bool = False):
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, drop_path, init_values, attn_fp32)
        self.keep_ratio = keep_ratio
        self.trade_off = trade_off
        self.pool_score = pool_score

    def _update_score(self, score: Optional[torch.Tensor], cls_attn: torch.Tensor) -> torch.Tensor:
        if score is None:  # first block: the score is the class attention itself
            return cls_attn
        return (1 - self.trade_off) * score + self.trade_off * cls_attn

    def _ls(self, y: torch.Tensor, gamma: Optional[torch.Tensor]) -> torch.Tensor:
        return y if gamma is None else gamma * y

    def forward(self, x: torch.Tensor, cls_token: torch.Tensor, score: Optional[torch.Tensor]):
        """x (B, C, T, H, W), cls_token (B, 1, C), score None or (B, T*H*W) in token order -> same three."""
        x = x + self.pos_embed(x)
        B, C, T, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        N = tokens.shape[1]
        if self.keep_ratio == 1:
            t = torch.cat([cls_token, tokens], dim=1)
            y, cls_attn = self.attn.forward_with_cls_attn(self.norm1(t))
            score = self._update_score(score, cls_attn[:, 1:])
            t = t + self.drop_path(self._ls(y, self.gamma_1))
            t = t + self.drop_path(self._ls(self.mlp(self.norm2(t)), self.gamma_2))
            cls_token, tokens = t[:, :1], t[:, 1:]
        else:
            assert score is not None, "a pruned block needs the running token score of a previous block"
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
            y = self._ls(y, self.gamma_1)
            fast_update = y[:, -1:]
            t = t + self.drop_path(y)
            y = self._ls(self.mlp(self.norm2(t)), self.gamma_2)
            fast_update = fast_update + y[:, -1:]
            t = t + self.drop_path(y)
            dropped = dropped + fast_update.expand(-1, N - n_keep, -1)

            cls_token = t[:, :1]
            restore = torch.argsort(order, dim=1)
            tokens = _gather_tokens(torch.cat([t[:, 1:-1], dropped], dim=1), restore)
            score = _gather_tokens(sorted_score, restore)

        x = tokens.transpose(1, 2).reshape(B, C, T, H, W)
        if self.pool_score:
            # reuse the score at stage-4 resolution (spatial /2, same T); keep its sum
            total = score.sum(dim=1, keepdim=True)
            score = F.avg_pool3d(score.reshape(B, 1, T, H, W), kernel_size=(1, 2, 2), stride=(1, 2, 2)).flatten(1)
            score = score * (total / score.sum(dim=1, keepdim=True))
        return x, cls_token, score


class UniFormerVideoLight(nn.Module):
    """UniFormer-XXS / XS for video: conv stem, local stages 1-2, token-pruned global stages 3-4 with a class token.

    In eval mode the output is the average-pooled head; in training it is (pooled logits, class-token logits).
    """

    def __init__(
            self,
            depth=(2, 5, 8, 2),
            embed_dim=(56, 112, 224, 448),
            head_dim: int = 28,
            mlp_ratio: float = 3.0,
            qkv_bias: bool = True,
            keep_ratio=((), (), (1,) + (0.5,) * 7, (0.5, 0.5)),
            trade_off=((), (), (1,) + (0.5,) * 7, (0.5, 0.5)),
            layer_scale: bool = False,
            init_values: float = 0.1,
            attn_fp32: bool = False,
            num_classes: int = 400,
            in_chans: int = 3,
            global_pool: str = "avg",
            drop_rate: float = 0.0,
            attn_drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
    ):
        super().__init__()
        assert global_pool in ("avg", ""), global_pool
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.embed_dim = list(embed_dim)
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.grad_checkpointing = False

        self.patch_embed1 = ConvStem3d(in_chans, embed_dim[0])
        self.patch_embed2, self.patch_embed3, self.patch_embed4 = downsample_embeds(embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim[2]))
        self.cls_upsample = nn.Linear(embed_dim[2], embed_dim[3])
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = drop_path_rates(depth, drop_path_rate)
        ls = init_values if layer_scale else None
        for i in range(2):
            setattr(self, f"blocks{i + 1}", nn.ModuleList([
                LocalBlock3d(embed_dim[i], mlp_ratio, drop=drop_rate, drop_path=dpr[i][j], init_values=ls)
                for j in range(depth[i])]))
        for i in range(2, 4):
            setattr(self, f"blocks{i + 1}", nn.ModuleList([
                PrunedGlobalBlock3d(embed_dim[i], embed_dim[i] // head_dim, mlp_ratio, qkv_bias, drop=drop_rate,
                                    attn_drop=attn_drop_rate, drop_path=dpr[i][j], init_values=ls,
                                    attn_fp32=attn_fp32, keep_ratio=keep_ratio[i][j], trade_off=trade_off[i][j],
                                    pool_score=(i == 2 and j == depth[i] - 1))
                for j in range(depth[i])]))
        self.norm = nn.BatchNorm3d(embed_dim[-1])
        self.norm_cls = nn.LayerNorm(embed_dim[-1])
        self.head_drop = nn.Dropout(0.0)  # the official video head has no dropout
        self.head = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.head_cls = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()

        self.feature_info = [
            dict(num_chs=embed_dim[i], reduction=r, module=f"blocks{i + 1}") for i, r in enumerate((4, 8, 16, 32))]
        self.apply(init_weights)

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"cls_token"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(stem=r"^patch_embed1|^cls_token", blocks=[(r"^blocks(\d+)\.(\d+)", None),
                                                              (r"^patch_embed(\d+)|^cls_upsample", (0,)),
                                                              (r"^norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.head_cls = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def set_attn_fp32(self, enable: bool = True) -> "UniFormerVideoLight":
        """Switch the ``*_fp32`` flavour (attention math with autocast off) on an existing model."""
        for blk in (*self.blocks3, *self.blocks4):
            blk.attn.attn_fp32 = enable
        return self

    def _local_stage(self, blocks, x):
        for blk in blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def _stages(self, x: torch.Tensor, last: int = 3):
        """Yield (stage index, feature map, class token) for stages 0..last."""
        cls_token = score = None
        for i in range(last + 1):
            x = getattr(self, f"patch_embed{i + 1}")(x)
            if i == 0:
                x = self.pos_drop(x)
            if i < 2:
                x = self._local_stage(getattr(self, f"blocks{i + 1}"), x)
            else:
                if i == 2:
                    cls_token = self.cls_token.expand(x.shape[0], -1, -1)
                else:
                    cls_token = self.cls_upsample(cls_token)
                for blk in getattr(self, f"blocks{i + 1}"):
                    x, cls_token, score = blk(x, cls_token, score)
            yield i, x, cls_token

    def forward_intermediates(
            self,
            x: Union[torch.Tensor, List[torch.Tensor]],
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCTHW",
            intermediates_only: bool = False,
    ):
        assert output_fmt == "NCTHW", "Output format must be NCTHW."
        x = unwrap_clip(x)
        take_indices, max_index = feature_take_indices(4, indices)
        intermediates = []
        last = max_index if stop_early else 3
        for i, x, _ in self._stages(x, last):
            if i in take_indices:
                intermediates.append(self.norm(x) if norm and i == 3 else x)
        if intermediates_only:
            return intermediates
        if last == 3:
            x = self.norm(x)
        return x, intermediates

    def forward_features(self, x: Union[torch.Tensor, List[torch.Tensor]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> (normalised stage-4 map (B, C, T, H, W), class token (B, 1, C))."""
        for _, x, cls_token in self._stages(unwrap_clip(x)):
            pass
        return self.norm(x), cls_token

    def forward_head(self, x: torch.Tensor, cls_token: Optional[torch.Tensor] = None, pre_logits: bool = False):
        pooled = x.flatten(2).mean(-1) if self.global_pool == "avg" else x
        pooled = self.head_drop(pooled)
        if pre_logits:
            return pooled
        logits = self.head(pooled)
        if self.training and cls_token is not None:
            return logits, self.head_cls(self.norm_cls(cls_token).squeeze(1))
        return logits

    def forward(self, x: Union[torch.Tensor, List[torch.Tensor]]):
        x, cls_token = self.forward_features(x)
        return self.forward_head(x, cls_token)


_XXS = dict(depth=(2, 5, 8, 2), embed_dim=(56, 112, 224, 448), head_dim=28,
            keep_ratio=((), (), (1,) + (0.5,) * 7, (0.5,) * 2), trade_off=((), (), (1,) + (0.5,) * 7, (0.5,) * 2))
MODEL_ARGS = {
    "uniformer_xxs_video": _XXS,
    "uniformer_xs_video": dict(depth=(3, 5, 9, 3), embed_dim=(64, 128, 256, 512), head_dim=32,
                               keep_ratio=((), (), (1,) + (0.5,) * 8, (0.5,) * 3),
                               trade_off=((), (), (1,) + (0.5,) * 8, (0.5,) * 3)),
    "uniformer_xxs_ls_video": dict(_XXS, layer_scale=True, init_values=0.1),
}

default_cfgs = generate_video_default_cfgs(MODEL_ARGS)


def _create_uniformer_video_light(variant: str, pretrained: bool = False, **kwargs) -> UniFormerVideoLight:
    return build_video_model(UniFormerVideoLight, variant, pretrained, MODEL_ARGS[variant], kwargs,
                             cfg_to_kwargs=("num_classes", "attn_fp32"))


@register_model
def uniformer_xxs_video(pretrained=False, **kwargs) -> UniFormerVideoLight:
    return _create_uniformer_video_light("uniformer_xxs_video", pretrained, **kwargs)


@register_model
def uniformer_xs_video(pretrained=False, **kwargs) -> UniFormerVideoLight:
    return _create_uniformer_video_light("uniformer_xs_video", pretrained, **kwargs)


@register_model
def uniformer_xxs_ls_video(pretrained=False, **kwargs) -> UniFormerVideoLight:
    return _create_uniformer_video_light("uniformer_xxs_ls_video", pretrained, **kwargs)
