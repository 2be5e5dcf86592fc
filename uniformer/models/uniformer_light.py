"""Light ("hourglass") UniFormer image classifiers: UniFormer-XXS and UniFormer-XS.

Stages 1-2 are the usual local MHRA blocks; stages 3-4 run global MHRA on a class token plus a
pruned token set (token mixer adapted from Evo-ViT): a running importance score per patch token
(the head-averaged attention of the class token) picks the top ``keep_ratio`` tokens; the rest are
collapsed into one score-weighted representative token, whose residual update is broadcast back to
every dropped token. Same function and state-dict keys as the official ``uniformer_light.py``.

The pruning state (scores) is passed between blocks explicitly rather than through module-level
globals as in the official code, so two models (or threads) never share it, and token positions are
kept as integer indices, not as a float channel concatenated to the features (exact under bf16).
"""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import build_model_with_cfg, register_model
from timm.models._features import feature_take_indices

from .blocks import GlobalBlock, LocalBlock, drop_path_rates, init_weights, make_patch_embeds
from .cfgs import generate_default_cfgs_from_paper, refuse_download

__all__ = ["UniFormerLight", "PrunedGlobalBlock"]


def _gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, C) or (B, N), index (B, M) -> the indexed tokens (B, M, C) or (B, M)."""
    if x.dim() == 2:
        return torch.gather(x, 1, index)
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class PrunedGlobalBlock(GlobalBlock):
    """Global MHRA block on [class token, informative tokens, representative token] ("EvoSABlock").

    Args (besides GlobalBlock's):
        keep_ratio: fraction of patch tokens processed (1 = all tokens, no pruning).
        trade_off: weight of this block's class attention in the running score.
        pool_score: average-pool the score map 2x2 at the end (last block before a downsampling).
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop=0.0, attn_drop=0.0, drop_path=0.0,
                 init_values=None, keep_ratio: float = 1.0, trade_off: float = 0.0, pool_score: bool = False):
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, drop_path, init_values)
        self.keep_ratio = keep_ratio
        self.trade_off = trade_off
        self.pool_score = pool_score
        # layer-scale gamma of the dropped tokens' fast update; absent in every released checkpoint
        self.gamma_3 = nn.Parameter(init_values * torch.ones(dim)) if init_values is not None and keep_ratio != 1 \
            else None

    def _update_score(self, score: Optional[torch.Tensor], cls_attn: torch.Tensor) -> torch.Tensor:
        if score is None:  # first block: the score is the class attention itself
            return cls_attn
        return (1 - self.trade_off) * score + self.trade_off * cls_attn

    def forward(self, x: torch.Tensor, cls_token: torch.Tensor, score: Optional[torch.Tensor]):
        """x (B, C, H, W), cls_token (B, 1, C), score None or (B, H*W) in spatial order -> same three."""
        x = x + self.pos_embed(x)
        B, C, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        N = tokens.shape[1]
        if self.keep_ratio == 1:
            t = torch.cat([cls_token, tokens], dim=1)
            y, cls_attn = self.attn.forward_with_cls_attn(self.norm1(t))
            score = self._update_score(score, cls_attn[:, 1:])
            t = t + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
            y = self.mlp(self.norm2(t))
            t = t + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)
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
            fast_update = y[:, -1:]
            t = t + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
            y = self.mlp(self.norm2(t))
            fast_update = fast_update + y[:, -1:]
            t = t + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)
            if self.gamma_3 is not None:
                fast_update = self.gamma_3 * fast_update
            dropped = dropped + fast_update.expand(-1, N - n_keep, -1)

            cls_token = t[:, :1]
            restore = torch.argsort(order, dim=1)
            tokens = _gather_tokens(torch.cat([t[:, 1:-1], dropped], dim=1), restore)
            score = _gather_tokens(sorted_score, restore)

        x = tokens.transpose(1, 2).reshape(B, C, H, W)
        if self.pool_score:
            # reuse the score at the next stage's resolution; keep its sum
            total = score.sum(dim=1, keepdim=True)
            score = F.avg_pool2d(score.reshape(B, 1, H, W), kernel_size=2, stride=2).flatten(1)
            score = score * (total / score.sum(dim=1, keepdim=True))
        return x, cls_token, score


class UniFormerLight(nn.Module):
    """UniFormer-XXS / XS: conv stem, local stages 1-2, token-pruned global stages 3-4 with a class token.

    In eval mode the output is the average-pooled head; in training it is (pooled logits, class-token
    logits), which the official recipe averages in its loss.
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
            init_values: float = 1e-6,
            num_classes: int = 1000,
            in_chans: int = 3,
            img_size: int = 224,
            global_pool: str = "avg",
            drop_rate: float = 0.0,
            attn_drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.embed_dim = list(embed_dim)
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.img_size = img_size
        self.grad_checkpointing = False

        for i, embed in enumerate(make_patch_embeds(in_chans, embed_dim, conv_stem=True, conv_downsample=False)):
            setattr(self, f"patch_embed{i + 1}", embed)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim[2]))
        self.cls_upsample = nn.Linear(embed_dim[2], embed_dim[3])
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = drop_path_rates(depth, drop_path_rate)
        ls = init_values if layer_scale else None
        for i in range(2):
            setattr(self, f"blocks{i + 1}", nn.ModuleList([
                LocalBlock(embed_dim[i], mlp_ratio, drop=drop_rate, drop_path=dpr[i][j], init_values=ls)
                for j in range(depth[i])]))
        for i in range(2, 4):
            setattr(self, f"blocks{i + 1}", nn.ModuleList([
                PrunedGlobalBlock(embed_dim[i], embed_dim[i] // head_dim, mlp_ratio, qkv_bias, drop=drop_rate,
                                  attn_drop=attn_drop_rate, drop_path=dpr[i][j], init_values=ls,
                                  keep_ratio=keep_ratio[i][j], trade_off=trade_off[i][j],
                                  pool_score=(i == 2 and j == depth[i] - 1))
                for j in range(depth[i])]))
        self.norm = nn.BatchNorm2d(embed_dim[-1])
        self.norm_cls = nn.LayerNorm(embed_dim[-1])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.head_cls = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()

        reductions = (4, 8, 16, 32)
        self.feature_info = [
            dict(num_chs=embed_dim[i], reduction=reductions[i], module=f"blocks{i + 1}") for i in range(4)]
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

    def _local_stage(self, blocks, x):
        for blk in blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def _stages(self, x: torch.Tensor, last: int = 3):
        """Yield (stage index, feature map) for stages 0..last; the class token is returned at the end."""
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
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ):
        assert output_fmt == "NCHW", "Output format must be NCHW."
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

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True):
        take_indices, max_index = feature_take_indices(4, indices)
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> (normalised stage-4 map (B, C, H, W), class token (B, 1, C))."""
        for _, x, cls_token in self._stages(x):
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

    def forward(self, x: torch.Tensor):
        x, cls_token = self.forward_features(x)
        return self.forward_head(x, cls_token)


MODEL_ARGS = {
    "uniformer_xxs": dict(depth=(2, 5, 8, 2), embed_dim=(56, 112, 224, 448), head_dim=28,
                          keep_ratio=((), (), (1,) + (0.5,) * 7, (0.5,) * 2),
                          trade_off=((), (), (1,) + (0.5,) * 7, (0.5,) * 2)),
    "uniformer_xs": dict(depth=(3, 5, 9, 3), embed_dim=(64, 128, 256, 512), head_dim=32,
                         keep_ratio=((), (), (1,) + (0.5,) * 8, (0.5,) * 3),
                         trade_off=((), (), (1,) + (0.5,) * 8, (0.5,) * 3)),
}

default_cfgs = generate_default_cfgs_from_paper(MODEL_ARGS)


def _create_uniformer_light(variant: str, pretrained: bool = False, **kwargs) -> UniFormerLight:
    refuse_download(variant, pretrained, kwargs)
    args = dict(MODEL_ARGS[variant])
    args.update(kwargs)
    out_indices = args.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        UniFormerLight, variant, pretrained, feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **args)


@register_model
def uniformer_xxs(pretrained=False, **kwargs) -> UniFormerLight:
    return _create_uniformer_light("uniformer_xxs", pretrained, **kwargs)


@register_model
def uniformer_xs(pretrained=False, **kwargs) -> UniFormerLight:
    return _create_uniformer_light("uniformer_xs", pretrained, **kwargs)
