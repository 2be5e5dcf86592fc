"""What the dense tasks' paper tables share (ADE20K, COCO pose): entries named by their official experiment
(``models.dense_catalog``), the whole model profiled at the published FLOPs input, and several published metrics
per row besides the primary one.
"""
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..config import ConfigError
from .base import Column


def init_backbone(backbone, path: Optional[str]) -> None:
    """Recipe key ``backbone_init``: an ImageNet checkpoint (ours or official) into a dense model's backbone, as
    the official configs' ``pretrained`` (``models.checkpoint.load_into_dense_backbone``: classifier and final
    norm ignored, dense norms fresh); null trains from scratch."""
    if not path:
        return
    from ..models.checkpoint import CheckpointError, load_into_dense_backbone
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such ImageNet checkpoint (recipe key backbone_init); download it or set "
                          "backbone_init=null to train from scratch")
    try:
        ignored, fresh = load_into_dense_backbone(backbone, path)
    except CheckpointError as e:
        raise ConfigError(f"{path} (backbone_init): {e}") from None
    print(f"initial weights: backbone from {path} ({len(ignored)} classifier keys ignored, {len(fresh)} dense norms "
          "fresh)", file=sys.stderr)


class DenseTableMixin:
    """Profile and report hooks of a task whose entries are ``DenseEntry`` (mixed into a ``Task``)."""

    # (paper_results.csv column, metrics.json key, header) of the published metrics after the primary one
    extra_metrics: Sequence[Tuple[str, str, str]] = ()

    def profile_inputs(self, entry) -> Tuple[int, ...]:
        return (3, *entry.input_hw)

    def profile_build_key(self, entry):
        return entry.name  # one network per experiment (test configs differ in stage-3 attention)

    def profile_fields(self, entry) -> Dict[str, Any]:
        return {"img_size": entry.img_size}

    def report_fields(self, table, entry, prof, ev, comparable):
        return self.metric_fields(entry, ev, comparable)

    def metric_fields(self, entry, ev: Optional[Dict], comparable: bool) -> Dict[str, Any]:
        """``<col>_published`` / ``<col>`` / ``<col>_delta`` of each extra metric (Δ only on the real data)."""
        out = {}
        for col, key, _ in self.extra_metrics:
            pub = _num(entry.row.get(col))
            got = ev.get(key) if ev else None
            out.update({f"{col}_published": pub, col: got,
                        f"{col}_delta": got - pub if comparable and got is not None and pub is not None else None})
        return out

    def metric_columns(self) -> List[Column]:
        return [Column(header, col, compare="abs") for col, _, header in self.extra_metrics]


def _num(v) -> Optional[float]:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
