"""The published evaluation pre-processing per family, as the official code resolves it.

Source (Sense-X/UniFormer): the plain and light models are evaluated by the DeiT-based image_classification/main.py
(resize 256/224 of the crop, bicubic, ImageNet mean/std). The token-labelling models by token_labeling/validate.py,
whose data config comes from the model's default cfg: tlt/models/uniformer.py sets ``model.default_cfg = _cfg()``
imported from timm.models.vision_transformer, and the pinned timm 0.4.12's ``_cfg`` has mean = std =
(0.5, 0.5, 0.5) (IMAGENET_INCEPTION_*), crop_pct 0.9, bicubic; exp/*_tl_384/test.sh passes only --img-size 384.
"""
import pytest
import timm
import torchvision.transforms as T

import uniformer  # noqa: F401  (registers the models)
from uniformer.data.transforms import build_eval_transform


def _steps(model_name):
    tf = build_eval_transform(timm.create_model(model_name))
    resize = next(t for t in tf.transforms if isinstance(t, T.Resize))
    crop = next(t for t in tf.transforms if isinstance(t, T.CenterCrop))
    norm = next(t for t in tf.transforms if isinstance(t, T.Normalize))
    return resize.size, tuple(crop.size), tuple(round(float(m), 3) for m in norm.mean), tuple(round(float(s), 3) for s in norm.std)


@pytest.mark.parametrize("name, resize, crop, mean, std", [
    ("uniformer_small.in1k", 256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("uniformer_xxs.in1k_160", 182, 160, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("uniformer_small_tl.in1k", 248, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ("uniformer_large_ls_tl.in1k_384", 426, 384, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
])
def test_eval_transform_per_family(name, resize, crop, mean, std):
    got_resize, got_crop, got_mean, got_std = _steps(name)
    assert got_resize in (resize, [resize], (resize,)) and got_crop == (crop, crop)
    assert (got_mean, got_std) == (mean, std)
