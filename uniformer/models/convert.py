"""Official dense checkpoints (mmdet / mmseg / mmpose layouts) -> our models' state dicts.

``CONVERTERS`` maps a config-name prefix to a function ``(state_dict, config_name) -> state_dict``; the
longest matching prefix wins. Detection (``mask_rcnn_``, ``cascade_mask_rcnn_``), segmentation (``upernet_``,
``fpn_``) and pose (``top_down_``) are registered at the end of this module, their modules imported at first use;
other prefixes can be added with ``register``.
``BUILDERS`` maps the same prefixes to the model the converted dict loads into with ``strict=True``.
"""
import importlib
import re
from typing import Callable, Dict, List, Tuple

import torch

StateDict = Dict[str, torch.Tensor]
CONVERTERS: Dict[str, Callable[[StateDict, str], StateDict]] = {}
BUILDERS: Dict[str, Callable[[str], torch.nn.Module]] = {}


def register(prefix: str, converter: Callable[[StateDict, str], StateDict],
             builder: Callable[[str], torch.nn.Module]) -> None:
    """Make ``convert_checkpoint`` / ``build_for`` handle config names starting with ``prefix``."""
    CONVERTERS[prefix] = converter
    BUILDERS[prefix] = builder


def _prefix(config_name: str) -> str:
    matches = [p for p in CONVERTERS if config_name.startswith(p)]
    if not matches:
        raise KeyError(f"{config_name}: no converter registered (known prefixes: {sorted(CONVERTERS)})")
    return max(matches, key=len)


def convert_checkpoint(state_dict: StateDict, config_name: str) -> StateDict:
    """The official state dict of ``config_name`` (``checkpoint['state_dict']``) in our model's layout."""
    return CONVERTERS[_prefix(config_name)](state_dict, config_name)


def build_for(config_name: str) -> torch.nn.Module:
    """Our model for ``config_name`` (what ``convert_checkpoint``'s output loads into)."""
    return BUILDERS[_prefix(config_name)](config_name)


def apply_rules(state_dict: StateDict, rules: List[Tuple[str, str, Callable]]) -> StateDict:
    """Rename every key by the first matching (regex, template, transform) rule; a key no rule matches is an
    error (a silently dropped tensor would only show up as a bad metric)."""
    out = {}
    for key, value in state_dict.items():
        for pattern, template, transform in rules:
            m = re.fullmatch(pattern, key)
            if m:
                out[m.expand(template)] = transform(value)
                break
        else:
            raise KeyError(f"{key}: no conversion rule for this checkpoint key")
    return out


# --- class-row transforms: mmdet puts background last (fc_cls) or leaves it out (fc_reg, conv_logits);
# torchvision's predictors have background at row 0 (never selected at test time, so zeros are exact).
def copy(v):
    return v


def background_last_to_first(v):
    return torch.cat([v[-1:], v[:-1]])


def prepend_zero_rows(n: int) -> Callable:
    return lambda v: torch.cat([v.new_zeros((n,) + v.shape[1:]), v])


COMMON_RULES = [
    (r"backbone\.(.*)", r"backbone.body.\1", copy),
    (r"neck\.lateral_convs\.(\d)\.conv\.(weight|bias)", r"backbone.fpn.inner_blocks.\1.0.\2", copy),
    (r"neck\.fpn_convs\.(\d)\.conv\.(weight|bias)", r"backbone.fpn.layer_blocks.\1.0.\2", copy),
    (r"rpn_head\.rpn_conv\.(weight|bias)", r"rpn.head.conv.0.0.\1", copy),
    (r"rpn_head\.rpn_cls\.(weight|bias)", r"rpn.head.cls_logits.\1", copy),
    (r"rpn_head\.rpn_reg\.(weight|bias)", r"rpn.head.bbox_pred.\1", copy),
]


def _predictor_rules(src: str, dst: str) -> list:
    """fc_cls / fc_reg of one mmdet bbox head -> torchvision FastRCNNPredictor ``dst`` (named groups, so that
    ``src`` / ``dst`` may hold a numbered stage group ``\1``)."""
    return [(src + r"\.fc_cls\.(?P<p>weight|bias)", dst + r".cls_score.\g<p>", background_last_to_first),
            (src + r"\.fc_reg\.(?P<p>weight|bias)", dst + r".bbox_pred.\g<p>", prepend_zero_rows(4))]


def _mask_rules(src: str, head: str, predictor: str) -> list:
    """One mmdet FCNMaskHead -> torchvision MaskRCNNHeads ``head`` + MaskRCNNPredictor ``predictor``."""
    return [(src + r"\.convs\.(?P<i>\d)\.conv\.(?P<p>weight|bias)", head + r".\g<i>.0.\g<p>", copy),
            (src + r"\.upsample\.(?P<p>weight|bias)", predictor + r".conv5_mask.\g<p>", copy),
            (src + r"\.conv_logits\.(?P<p>weight|bias)", predictor + r".mask_fcn_logits.\g<p>",
             prepend_zero_rows(1))]


MASK_RCNN_RULES = COMMON_RULES + [
    (r"roi_head\.bbox_head\.shared_fcs\.0\.(weight|bias)", r"roi_heads.box_head.fc6.\1", copy),
    (r"roi_head\.bbox_head\.shared_fcs\.1\.(weight|bias)", r"roi_heads.box_head.fc7.\1", copy),
    *_predictor_rules(r"roi_head\.bbox_head", "roi_heads.box_predictor"),
    *_mask_rules(r"roi_head\.mask_head", "roi_heads.mask_head", "roi_heads.mask_predictor"),
]

# Cascade: stage i is the second key component; our box head i is torchvision's FastRCNNConvFCHead
# (Sequential: 4 x [conv, bn, relu], flatten, fc, relu), so the fc is its module 5.
CASCADE_RULES = COMMON_RULES + [
    (r"roi_head\.bbox_head\.(\d)\.shared_convs\.(\d)\.conv\.weight", r"roi_heads.box_head.\1.\2.0.weight", copy),
    (r"roi_head\.bbox_head\.(\d)\.shared_convs\.(\d)\.bn\.(.*)", r"roi_heads.box_head.\1.\2.1.\3", copy),
    (r"roi_head\.bbox_head\.(\d)\.shared_fcs\.0\.(weight|bias)", r"roi_heads.box_head.\1.5.\2", copy),
    *_predictor_rules(r"roi_head\.bbox_head\.(\d)", r"roi_heads.box_predictor.\1"),
    *_mask_rules(r"roi_head\.mask_head\.(\d)", r"roi_heads.mask_head.\1", r"roi_heads.mask_predictor.\1"),
]


def convert_mask_rcnn(state_dict: StateDict, config_name: str) -> StateDict:
    return apply_rules(state_dict, MASK_RCNN_RULES)


def convert_cascade(state_dict: StateDict, config_name: str) -> StateDict:
    return apply_rules(state_dict, CASCADE_RULES)


def _lazy(module: str, name: str) -> Callable:
    """``module.name`` (relative to this package), imported at its first call: building one kind of dense model
    does not import the others' modules (detection pulls in torchvision's detection package)."""
    def call(*args):
        return getattr(importlib.import_module(module, __package__), name)(*args)
    call.__name__ = call.__qualname__ = name
    return call


register("mask_rcnn_", convert_mask_rcnn, _lazy(".detection", "build_detector"))
register("cascade_mask_rcnn_", convert_cascade, _lazy(".detection", "build_detector"))
for _prefix_name in ("upernet_", "fpn_"):
    register(_prefix_name, _lazy(".segmentation", "convert_segmentation_checkpoint"),
             _lazy(".segmentation", "build_segmentor"))
register("top_down_", _lazy(".pose", "convert_pose_checkpoint"), _lazy(".pose", "build_pose_model"))
