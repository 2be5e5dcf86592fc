"""Fixes for timm's augmentation ops under the pinned libraries (used by the image and the video recipes)."""
from PIL import Image, ImageOps
from timm.data import auto_augment


def _posterize(img, bits_to_keep, **__):
    """timm's ``posterize`` op, keeping 0 bits as a black image (as older Pillow did) instead of raising.

    Recent Pillow (the pinned 13.0) rejects ``ImageOps.posterize(img, 0)``, which timm's AutoAugment ``v0``
    (Posterize level 2 -> 0 bits) and RandAugment ``inc1`` (PosterizeIncreasing at magnitude 10) request:
    without this a paper-recipe run dies in its first epochs with "bits must be between ... 1 and 8".
    """
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def patch_timm_posterize() -> None:
    """Route timm's Posterize / PosterizeIncreasing / PosterizeOriginal ops through ``_posterize`` (idempotent)."""
    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        if auto_augment.NAME_TO_OP.get(name) is auto_augment.posterize:
            auto_augment.NAME_TO_OP[name] = _posterize
