"""UniFormer image classifiers: the plain ImageNet models and the token-labelling ones.

Paper: "UniFormer: Unifying Convolution and Self-attention for Visual Recognition" (arXiv 2201.09450).
A faithful re-implementation of the official networks (Sense-X/UniFormer): same function, same
state-dict keys, so official checkpoints load with ``strict=True``. Stages 1-2 use local MHRA
(``LocalBlock``), stages 3-4 global MHRA (``GlobalBlock``).

Registered names: the official constructor names for the plain models (``uniformer_small`` ...)
and ``<official name>_tl`` for the token-labelling file's models, whose defaults differ
(e.g. its ``uniformer_small`` has head_dim 32). Resolution is an argument (``img_size``); the
published checkpoints are pretrained tags (``uniformer_small_tl.in1k_384``).
"""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from timm.models import build_model_with_cfg, register_model
from timm.models._features import feature_take_indices

from .blocks import GlobalBlock, LocalBlock, drop_path_rates, init_weights, make_patch_embeds
from .cfgs import generate_default_cfgs_from_paper, refuse_download

__all__ = ["UniFormer"]


class UniFormer(nn.Module):
    """Four-stage UniFormer (strides 4/8/16/32) with a BatchNorm + average-pool + linear head.

    Args:
        depth: blocks per stage.
        embed_dim: channels per stage.
        head_dim: channels per attention head in the global stages (heads = dim // head_dim).
        mlp_ratio: MLP hidden ratio.
        conv_stem: overlapping conv+BN stem and downsampling (S-dagger) instead of patch embeddings.
        layer_scale: None, "global" (gamma in stages 3-4, ``uniformer_base_ls``) or "all" (UniFormer-L).
        init_values: layer-scale initial value.
        aux_head: token-labelling auxiliary head on every stage-4 token.
        mix_token: token-labelling MixToken augmentation in training (needs ``aux_head``).
        img_size: nominal input size (metadata only; any size divisible by 32 works).
    """

    def __init__(
            self,
            depth=(3, 4, 8, 3),
            embed_dim=(64, 128, 320, 512),
            head_dim: int = 64,
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            conv_stem: bool = False,
            layer_scale: Optional[str] = None,
            init_values: float = 1e-6,
            aux_head: bool = False,
            mix_token: bool = False,
            num_classes: int = 1000,
            in_chans: int = 3,
            img_size: int = 224,
            global_pool: str = "avg",
            drop_rate: float = 0.0,
            attn_drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
    ):
        super().__init__()
        assert layer_scale in (None, "global", "all"), layer_scale
        assert global_pool in ("avg", ""), global_pool
        assert not mix_token or aux_head, "MixToken needs the auxiliary (dense) head"
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.embed_dim = list(embed_dim)
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.img_size = img_size
        self.mix_token = mix_token
        self.grad_checkpointing = False

        for i, embed in enumerate(make_patch_embeds(in_chans, embed_dim, conv_stem, conv_downsample=conv_stem)):
            setattr(self, f"patch_embed{i + 1}", embed)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = drop_path_rates(depth, drop_path_rate)
        local_ls = init_values if layer_scale == "all" else None
        global_ls = init_values if layer_scale is not None else None
        for i in range(2):
            setattr(self, f"blocks{i + 1}", nn.ModuleList([
                LocalBlock(embed_dim[i], mlp_ratio, drop=drop_rate, drop_path=dpr[i][j], init_values=local_ls)
                for j in range(depth[i])]))
        for i in range(2, 4):
            setattr(self, f"blocks{i + 1}", nn.ModuleList([
                GlobalBlock(embed_dim[i], embed_dim[i] // head_dim, mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate,
                            attn_drop=attn_drop_rate, drop_path=dpr[i][j], init_values=global_ls)
                for j in range(depth[i])]))
        self.norm = nn.BatchNorm2d(embed_dim[-1])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.aux_head = (nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()) if aux_head else None

        reductions = (4, 8, 16, 32)
        self.feature_info = [
            dict(num_chs=embed_dim[i], reduction=reductions[i], module=f"blocks{i + 1}") for i in range(4)]
        self.apply(init_weights)

    # --- timm model API -------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(stem=r"^patch_embed1", blocks=[(r"^blocks(\d+)\.(\d+)", None), (r"^patch_embed(\d+)", (0,)),
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
        if self.aux_head is not None:
            self.aux_head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def stages(self):
        """(patch embedding, blocks) per stage."""
        return [(getattr(self, f"patch_embed{i}"), getattr(self, f"blocks{i}")) for i in range(1, 5)]

    def _run_blocks(self, blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for blk in blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ):
        """Stage outputs (strides 4, 8, 16, 32) for dense heads; ``norm`` applies the final BN to the last one."""
        assert output_fmt == "NCHW", "Output format must be NCHW."
        take_indices, max_index = feature_take_indices(4, indices)
        intermediates = []
        stages = self.stages()[:max_index + 1] if stop_early else self.stages()
        for i, (embed, blocks) in enumerate(stages):
            x = embed(x)
            if i == 0:
                x = self.pos_drop(x)
            x = self._run_blocks(blocks, x)
            if i in take_indices:
                intermediates.append(self.norm(x) if norm and i == 3 else x)
        if intermediates_only:
            return intermediates
        if len(stages) == 4:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True):
        take_indices, max_index = feature_take_indices(4, indices)
        for i in range(max_index + 1, 4):
            setattr(self, f"patch_embed{i + 1}", nn.Identity())
            setattr(self, f"blocks{i + 1}", nn.ModuleList())
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        mix_box = None
        for i, (embed, blocks) in enumerate(self.stages()):
            x = embed(x)
            if i == 0:
                x = self.pos_drop(x)
                if self.mix_token and self.training:
                    x, mix_box = self._mix_tokens(x)
            x = self._run_blocks(blocks, x)
        x = self.norm(x)
        self._mix_box = mix_box
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False):
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        pooled = tokens.mean(dim=1) if self.global_pool == "avg" else tokens
        pooled = self.head_drop(pooled)
        if pre_logits:
            return pooled
        logits = self.head(pooled)
        if self.aux_head is None:
            return logits
        aux = self.aux_head(tokens)
        if not self.training:
            # Token-labelling inference: class logits + 0.5 x the strongest token's logits.
            return logits + 0.5 * aux.max(dim=1)[0]
        return logits, self._unmix_aux(aux, x.shape[-2:]), self._mix_box

    def forward(self, x: torch.Tensor):
        return self.forward_head(self.forward_features(x))

    # --- token labelling: MixToken ----------------------------------------------------------------
    def _mix_tokens(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int, int, int]]:
        """Swap a random box of stage-1 tokens with the flipped batch (lambda ~ Beta(1, 1)), as the official TL code.

        Uses torch's RNG (not numpy's), so a seeded run is reproducible.
        """
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

    def _unmix_aux(self, aux: torch.Tensor, hw) -> torch.Tensor:
        """Undo MixToken on the per-token logits (stage 4 is 8x coarser than stage 1)."""
        if self._mix_box is None:
            return aux
        y1, x1, y2, x2 = (v // 8 for v in self._mix_box)
        B, N, K = aux.shape
        grid = aux.reshape(B, hw[0], hw[1], K)
        out = grid.clone()
        out[:, y1:y2, x1:x2] = grid.flip(0)[:, y1:y2, x1:x2]
        return out.reshape(B, N, K)


# --- configs ---------------------------------------------------------------------------------------
MODEL_ARGS = {
    # plain ImageNet models (image_classification/models/uniformer.py)
    "uniformer_small": dict(depth=(3, 4, 8, 3), head_dim=64),
    "uniformer_small_plus": dict(depth=(3, 5, 9, 3), head_dim=32, conv_stem=True),
    "uniformer_small_plus_dim64": dict(depth=(3, 5, 9, 3), head_dim=64, conv_stem=True),
    "uniformer_base": dict(depth=(5, 8, 20, 7), head_dim=64),
    "uniformer_base_ls": dict(depth=(5, 8, 20, 7), head_dim=64, layer_scale="global"),
    # token-labelling models (image_classification/token_labeling/tlt/models/uniformer.py)
    "uniformer_small_tl": dict(depth=(3, 4, 8, 3), head_dim=32, aux_head=True, mix_token=True),
    "uniformer_small_dim64_tl": dict(depth=(3, 4, 8, 3), head_dim=64, aux_head=True, mix_token=True),
    "uniformer_small_plus_tl": dict(depth=(3, 5, 9, 3), head_dim=32, conv_stem=True, aux_head=True, mix_token=True),
    "uniformer_small_plus_dim64_tl": dict(depth=(3, 5, 9, 3), head_dim=64, conv_stem=True, aux_head=True,
                                          mix_token=True),
    "uniformer_base_tl": dict(depth=(5, 8, 20, 7), head_dim=32, aux_head=True, mix_token=True),
    "uniformer_base_dim64_tl": dict(depth=(5, 8, 20, 7), head_dim=64, aux_head=True, mix_token=True),
    "uniformer_large_ls_tl": dict(depth=(5, 10, 24, 7), embed_dim=(128, 192, 448, 640), head_dim=64,
                                  layer_scale="all", aux_head=True, mix_token=True),
}

default_cfgs = generate_default_cfgs_from_paper(MODEL_ARGS)


def _create_uniformer(variant: str, pretrained: bool = False, **kwargs) -> UniFormer:
    refuse_download(variant, pretrained, kwargs)
    args = dict(MODEL_ARGS[variant])
    args.update(kwargs)
    out_indices = args.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        UniFormer, variant, pretrained, feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **args)


@register_model
def uniformer_small(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_small", pretrained, **kwargs)


@register_model
def uniformer_small_plus(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_small_plus", pretrained, **kwargs)


@register_model
def uniformer_small_plus_dim64(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_small_plus_dim64", pretrained, **kwargs)


@register_model
def uniformer_base(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_base", pretrained, **kwargs)


@register_model
def uniformer_base_ls(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_base_ls", pretrained, **kwargs)


@register_model
def uniformer_small_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_small_tl", pretrained, **kwargs)


@register_model
def uniformer_small_dim64_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_small_dim64_tl", pretrained, **kwargs)


@register_model
def uniformer_small_plus_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_small_plus_tl", pretrained, **kwargs)


@register_model
def uniformer_small_plus_dim64_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_small_plus_dim64_tl", pretrained, **kwargs)


@register_model
def uniformer_base_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_base_tl", pretrained, **kwargs)


@register_model
def uniformer_base_dim64_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_base_dim64_tl", pretrained, **kwargs)


@register_model
def uniformer_large_ls_tl(pretrained=False, **kwargs) -> UniFormer:
    return _create_uniformer("uniformer_large_ls_tl", pretrained, **kwargs)
