"""The one UniFormer network: image (2D) and video (3D), plain, light, token-labelling and dense backbones.

Paper: "UniFormer: Unifying Convolution and Self-attention for Visual Recognition" (arXiv 2201.09450);
video: arXiv 2201.04676. A faithful re-implementation of the official networks (Sense-X/UniFormer): same
function, same state-dict keys, so official checkpoints load with ``strict=True``.

Four stages (spatial strides 4/8/16/32; video: temporal stride 2 in the stem only), each a patch embedding
and a list of blocks whose token mixer comes from a per-stage spec (``mixers``):

* ``local``: local MHRA (``LocalBlock``), stages 1-2 of every model;
* ``global``: global MHRA over all tokens (T*H*W in video);
* ``window``: global MHRA inside ``window_size`` windows (dense backbones, 2D);
* ``hybrid``: ``window`` except every 4th block (index i with (i + 1) % 4 == 0) global, the official rule;
* ``pruned``: the light models' token-pruned MHRA with a class token (``keep_ratio``/``trade_off`` per block).

The heads (``heads.py``) are picked by ``head``: ``linear``, ``token_label``, ``class_token`` or ``dense``.
Inputs are (B, C, H, W) images or (B, C, T, H, W) clips (``ndim`` 2 / 3; SlowFast's one-pathway ``[clip]``
is accepted too); resolution and frames are input shapes, not constructor arguments.
"""
from typing import List, Optional, Union

import torch
import torch.nn as nn
from timm.models._features import feature_take_indices

from .blocks import GlobalBlock, LocalBlock, PrunedGlobalBlock, drop_path_rates, init_weights, make_patch_embeds
from .heads import HEADS, class_token_logits, linear, make_heads, mix_tokens, token_label_logits

__all__ = ["UniFormer", "MIXERS"]

MIXERS = ("local", "global", "window", "hybrid", "pruned")


def unwrap_clip(x: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
    """Accept SlowFast's one-pathway list ``[clip]`` as well as the clip tensor itself."""
    if isinstance(x, (list, tuple)):
        assert len(x) == 1, f"expected one pathway, got {len(x)}"
        x = x[0]
    assert x.dim() == 5, f"expected a (B, C, T, H, W) clip, got shape {tuple(x.shape)}"
    return x


class UniFormer(nn.Module):
    """Four-stage UniFormer, generic over images and videos.

    Args:
        depth: blocks per stage.
        embed_dim: channels per stage.
        head_dim: channels per attention head (heads = dim // head_dim).
        mlp_ratio: MLP hidden ratio.
        mixers: token mixer per stage, see the module docstring.
        window_size: window of the ``window`` / ``hybrid`` stages.
        keep_ratio, trade_off: per stage, per block, for ``pruned`` stages (token fraction kept, score weight).
        ndim: 2 (images) or 3 (videos).
        conv_stem: overlapping two-conv BN stem (S-dagger and the light models) instead of the patch stem.
        conv_downsample: overlapping conv+BN downsampling (S-dagger) instead of patch embeddings.
        layer_scale: None, "global" (gamma in the attention stages, ``uniformer_base_ls``) or "all" (also the
            local blocks: UniFormer-L, the light ``_ls`` video model); True means "all".
        init_values: layer-scale initial value.
        fast_gamma: pruned blocks with layer scale get the image model's ``gamma_3`` (see ``PrunedGlobalBlock``).
        attn_fp32: attention math with autocast off (the official light video ``*_fp32`` classes).
        head: "linear", "token_label" (``aux_head`` + MixToken), "class_token" (light) or "dense" (norm1..4).
        mix_token: token-labelling MixToken augmentation in training (needs ``head="token_label"``).
        out_indices: stages a dense backbone returns (the pose backbone returns only the last).
        img_size: nominal input size (metadata only).
        head_drop_rate: dropout before the classifier (default ``drop_rate``; the video heads have none).
    """

    def __init__(
            self,
            depth=(3, 4, 8, 3),
            embed_dim=(64, 128, 320, 512),
            head_dim: int = 64,
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            mixers=("local", "local", "global", "global"),
            window_size: int = 14,
            keep_ratio=None,
            trade_off=None,
            ndim: int = 2,
            conv_stem: bool = False,
            conv_downsample: bool = False,
            layer_scale: Optional[Union[str, bool]] = None,
            init_values: float = 1e-6,
            fast_gamma: bool = True,
            attn_fp32: bool = False,
            head: str = "linear",
            mix_token: bool = False,
            out_indices=(0, 1, 2, 3),
            num_classes: int = 1000,
            in_chans: int = 3,
            img_size: int = 224,
            global_pool: str = "avg",
            drop_rate: float = 0.0,
            head_drop_rate: Optional[float] = None,
            attn_drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
    ):
        super().__init__()
        layer_scale = "all" if layer_scale is True else (layer_scale or None)
        assert layer_scale in (None, "global", "all"), layer_scale
        assert global_pool in ("avg", ""), global_pool
        assert head in HEADS, head
        assert ndim in (2, 3), ndim
        assert len(mixers) == 4 and all(m in MIXERS for m in mixers), mixers
        assert not mix_token or head == "token_label", "MixToken needs the token-labelling (dense) head"
        self.mixers = tuple(mixers)
        self.ndim = ndim
        self.head_kind = head
        self.num_classes = num_classes if head != "dense" else 0
        self.global_pool = global_pool
        self.embed_dim = list(embed_dim)
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.img_size = img_size
        self.mix_token = mix_token
        self.out_indices = tuple(out_indices)
        self.grad_checkpointing = False
        self._mix_box = None

        for i, embed in enumerate(make_patch_embeds(in_chans, embed_dim, conv_stem, conv_downsample, ndim)):
            setattr(self, f"patch_embed{i + 1}", embed)
        self.pruned = "pruned" in self.mixers
        if self.pruned:  # the light models' class token joins at the first pruned stage (3)
            assert self.mixers[2:] == ("pruned", "pruned"), "the class token spans stages 3-4"
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim[2]))
            self.cls_upsample = nn.Linear(embed_dim[2], embed_dim[3])
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = drop_path_rates(depth, drop_path_rate)

        def block(i: int, j: int) -> nn.Module:
            """Block j of stage i, by the stage's token mixer."""
            mixer, dim = self.mixers[i], embed_dim[i]
            ls = init_values if layer_scale == "all" or (layer_scale == "global" and mixer != "local") else None
            if mixer == "local":
                return LocalBlock(dim, mlp_ratio, drop=drop_rate, drop_path=dpr[i][j], init_values=ls, ndim=ndim)
            args = dict(dim=dim, num_heads=dim // head_dim, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate,
                        attn_drop=attn_drop_rate, drop_path=dpr[i][j], init_values=ls, ndim=ndim, attn_fp32=attn_fp32)
            if mixer == "pruned":  # the last stage-3 block pools the score for stage 4
                return PrunedGlobalBlock(**args, keep_ratio=keep_ratio[i][j], trade_off=trade_off[i][j],
                                         pool_score=(i == 2 and j == depth[i] - 1), fast_gamma=fast_gamma)
            windowed = mixer == "window" or (mixer == "hybrid" and (j + 1) % 4 != 0)
            return GlobalBlock(**args, window_size=window_size if windowed else 0)

        for i in range(4):
            setattr(self, f"blocks{i + 1}", nn.ModuleList([block(i, j) for j in range(depth[i])]))

        for name, module in make_heads(head, embed_dim, num_classes, ndim).items():
            setattr(self, name, module)
        self.head_drop = nn.Dropout(drop_rate if head_drop_rate is None else head_drop_rate)
        self.feature_info = [
            dict(num_chs=embed_dim[i], reduction=r, module=f"blocks{i + 1}") for i, r in enumerate((4, 8, 16, 32))]
        self.apply(init_weights)

    # --- timm model API -------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self):
        return {"cls_token"} if self.pruned else set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        if self.pruned:
            return dict(stem=r"^patch_embed1|^cls_token", blocks=[(r"^blocks(\d+)\.(\d+)", None),
                                                                  (r"^patch_embed(\d+)|^cls_upsample", (0,)),
                                                                  (r"^norm", (99999,))])
        return dict(stem=r"^patch_embed1", blocks=[(r"^blocks(\d+)\.(\d+)", None), (r"^patch_embed(\d+)", (0,)),
                                                   (r"^norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return getattr(self, "head", nn.Identity())

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        if self.head_kind == "dense":
            return
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        for name in ("head", "head_cls", "aux_head"):
            if hasattr(self, name):
                setattr(self, name, linear(self.num_features, num_classes))

    def set_attn_fp32(self, enable: bool = True) -> "UniFormer":
        """Switch the light video ``*_fp32`` flavour (attention math with autocast off) on an existing model."""
        for blk in (*self.blocks3, *self.blocks4):
            blk.attn.attn_fp32 = enable
        return self

    # --- trunk ------------------------------------------------------------------------------------
    def _input(self, x):
        return unwrap_clip(x) if self.ndim == 3 else x

    def _run_blocks(self, blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for blk in blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def _stages(self, x: torch.Tensor, last: int = 3, mix: bool = False):
        """Yield (stage index, feature map, class token or None) after each stage 0..last.

        ``mix``: MixToken after the stem (token-labelling training); its box goes to ``self._mix_box``.
        """
        cls_token = score = None
        self._mix_box = None
        for i in range(last + 1):
            x = getattr(self, f"patch_embed{i + 1}")(x)
            if i == 0:
                x = self.pos_drop(x)
                if mix:
                    x, self._mix_box = mix_tokens(x)
            blocks = getattr(self, f"blocks{i + 1}")
            if self.mixers[i] == "pruned":
                cls_token = self.cls_token.expand(x.shape[0], -1, -1) if cls_token is None \
                    else self.cls_upsample(cls_token)
                for blk in blocks:
                    x, cls_token, score = blk(x, cls_token, score)
            else:
                x = self._run_blocks(blocks, x)
            yield i, x, cls_token

    def _final_norm(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Dense backbones: norm{i+1} of stage i; classifiers: the final BatchNorm (stage 4)."""
        return getattr(self, f"norm{i + 1}")(x) if self.head_kind == "dense" else self.norm(x)

    def forward_intermediates(
            self,
            x: Union[torch.Tensor, List[torch.Tensor]],
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: Optional[str] = None,
            intermediates_only: bool = False,
    ):
        """Stage outputs (strides 4, 8, 16, 32), channels first: (B, C_i, H/s, W/s) or (B, C_i, T/2, H/s, W/s).

        ``norm``: classifiers apply the final BN to the last stage, dense backbones their norm{i} to every stage.
        """
        fmts = (None, "NCHW") if self.ndim == 2 else (None, "NCHW", "NCTHW")  # timm's getter passes NCHW
        assert output_fmt in fmts, f"output format must be channels-first, one of {fmts[1:]}"
        x = self._input(x)
        take_indices, max_index = feature_take_indices(4, indices)
        intermediates = []
        last = max_index if stop_early else 3
        for i, x, _ in self._stages(x, last):
            if i in take_indices:
                intermediates.append(self._final_norm(i, x) if norm and (i == 3 or self.head_kind == "dense") else x)
        if intermediates_only:
            return intermediates
        if last == 3 and self.head_kind != "dense":
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True):
        take_indices, max_index = feature_take_indices(4, indices)
        for i in range(max_index + 1, 4):
            setattr(self, f"patch_embed{i + 1}", nn.Identity())
            setattr(self, f"blocks{i + 1}", nn.ModuleList())
        if prune_norm:
            for name in ("norm", "norm1", "norm2", "norm3", "norm4"):
                if hasattr(self, name):
                    setattr(self, name, nn.Identity())
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x):
        """Classifiers: the normalised stage-4 map (light: and the class token (B, 1, C)); dense: ``forward``."""
        if self.head_kind == "dense":
            return self.forward(x)
        mix = self.mix_token and self.training
        for _, x, cls_token in self._stages(self._input(x), mix=mix):
            pass
        x = self.norm(x)
        return (x, cls_token) if self.head_kind == "class_token" else x

    def forward_head(self, x: torch.Tensor, cls_token: Optional[torch.Tensor] = None, pre_logits: bool = False):
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        pooled = tokens.mean(dim=1) if self.global_pool == "avg" else x
        pooled = self.head_drop(pooled)
        if pre_logits:
            return pooled
        logits = self.head(pooled)
        if self.head_kind == "token_label":
            return token_label_logits(self.aux_head, logits, tokens, x.shape[-2:], self._mix_box, self.training)
        if self.head_kind == "class_token":
            return class_token_logits(self.norm_cls, self.head_cls, logits, cls_token, self.training)
        return logits

    def forward(self, x):
        """Classifiers: logits (training: see the heads); dense backbones: the normalised stage outputs (tuple)."""
        if self.head_kind == "dense":
            outs = []
            for i, x, _ in self._stages(self._input(x)):
                if i in self.out_indices:
                    outs.append(getattr(self, f"norm{i + 1}")(x))
            return tuple(outs)
        if self.head_kind == "class_token":
            return self.forward_head(*self.forward_features(x))
        return self.forward_head(self.forward_features(x))
