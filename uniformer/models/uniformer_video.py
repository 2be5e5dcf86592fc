"""Kept for importers of the former video module: the 2D -> 3D inflation lives in ``checkpoint.py``."""
from .checkpoint import inflate_state_dict, inflate_weight  # noqa: F401
