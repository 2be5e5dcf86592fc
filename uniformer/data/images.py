"""Strict image decoding shared by the dataset and the checker: a bad file raises ``BadImageError``.

"Strict" means fully decoded with truncation detection on; PIL otherwise decodes lazily (a corrupt
tail only shows up mid-epoch) and, with ``ImageFile.LOAD_TRUNCATED_IMAGES = True``, silently pads
truncated JPEGs with grey.
"""
import os
from contextlib import contextmanager

from PIL import Image, ImageFile

# Lower-case, as torchvision's ``has_file_allowed_extension`` lower-cases the file name before matching.
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


class BadImageError(OSError):
    """An image file that PIL cannot open or fully decode (unreadable, truncated, not an image)."""


def has_image_extension(path: os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


@contextmanager
def _truncation_detected():
    # LOAD_TRUNCATED_IMAGES is a PIL-wide switch that other code may have turned on; turn it off just
    # for this decode and put it back, so a truncated file raises instead of decoding as grey.
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def open_image(path: os.PathLike, mode: str = "RGB") -> Image.Image:
    """Open ``path``, decode every pixel and convert to ``mode``; raise ``BadImageError`` naming the file."""
    try:
        with _truncation_detected(), open(path, "rb") as f:
            img = Image.open(f)
            img.load()
            return img.convert(mode)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, EOFError, ... on corrupt data
        kind = "truncated image" if "truncated" in str(e).lower() else "unreadable image"
        raise BadImageError(f"{os.fspath(path)}: {kind} ({type(e).__name__}: {e})") from e
