"""uniformer-bench: reproduce, benchmark and regression-test every UniFormer model (arXiv 2201.09450).

Importing the package registers every variant in timm (``timm.create_model("uniformer_small")``).
"""
from . import models  # noqa: F401  (registers the models in timm)
from .models.checkpoint import CheckpointError, load_checkpoint

__version__ = "0.1.0"
__all__ = ["load_checkpoint", "CheckpointError", "__version__"]
