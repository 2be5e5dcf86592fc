"""UniFormer model families, registered in timm on import.

One network (``backbone.UniFormer``, 2D and 3D) built from one set of blocks (``blocks.py``) and heads
(``heads.py``); ``variants.py`` registers every variant and builds the official dense backbones.
"""
from .backbone import UniFormer
from .blocks import Attention, GlobalBlock, LocalBlock, PrunedGlobalBlock
from .catalog import Entry, imagenet_entries, manifest_model_name
from .checkpoint import (CheckpointError, _describe_mismatch, extract_state_dict, inflate_state_dict,
                         load_checkpoint, load_into_dense_backbone, read_checkpoint)
from .fused import set_fused_attn
from .variants import IMAGE_ARGS, VIDEO_ARGS, build_dense, build_official
from .video_catalog import LIGHT_VIDEO_MODELS, VIDEO_TASKS, video_entries

IMAGE_MODELS = (
    "uniformer_xxs", "uniformer_xs",
    "uniformer_small", "uniformer_small_plus", "uniformer_small_plus_dim64", "uniformer_base", "uniformer_base_ls",
    "uniformer_small_tl", "uniformer_small_dim64_tl", "uniformer_small_plus_tl", "uniformer_small_plus_dim64_tl",
    "uniformer_base_tl", "uniformer_base_dim64_tl", "uniformer_large_ls_tl",
)
VIDEO_MODELS = (
    "uniformer_xxs_video", "uniformer_xxs_ls_video", "uniformer_xs_video",
    "uniformer_small_video", "uniformer_base_video",
)
assert set(IMAGE_MODELS) == set(IMAGE_ARGS) and set(VIDEO_MODELS) == set(VIDEO_ARGS)
