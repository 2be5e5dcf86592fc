"""UniFormer model families, registered in timm on import."""
from .blocks import Attention, GlobalBlock, LocalBlock
from .uniformer import UniFormer
from .uniformer_light import PrunedGlobalBlock, UniFormerLight
from .fused import set_fused_attn

IMAGE_MODELS = (
    "uniformer_xxs", "uniformer_xs",
    "uniformer_small", "uniformer_small_plus", "uniformer_small_plus_dim64", "uniformer_base", "uniformer_base_ls",
    "uniformer_small_tl", "uniformer_small_dim64_tl", "uniformer_small_plus_tl", "uniformer_small_plus_dim64_tl",
    "uniformer_base_tl", "uniformer_base_dim64_tl", "uniformer_large_ls_tl",
)
from .uniformer_video import UniFormerVideo, inflate_state_dict
from .uniformer_video_light import UniFormerVideoLight
from .video_catalog import video_entries

VIDEO_MODELS = (
    "uniformer_xxs_video", "uniformer_xxs_ls_video", "uniformer_xs_video",
    "uniformer_small_video", "uniformer_base_video",
)
