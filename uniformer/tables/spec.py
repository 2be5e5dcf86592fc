"""What a profile measures for a paper table, and the table names the Snakemake rules and ``uniformer stage`` use.

Tables themselves are declared in the task registry (``uniformer.tasks``: their data sets, title, result-file
paths); this module re-exports them under the names the workflow imports (``TABLES``, ``get_table``,
``TableSpec``) and decides which items a profile trains and evaluates.

``<item>`` is a model as the table's ``train`` list names it (``uniformer_xxs``, or a video entry such as
``uniformer_small_video.k600_16x4``, whose tag picks the data set and clip protocol).
"""
from pathlib import Path
from typing import Dict, Tuple

from ..tasks import RESULTS, TableSpec, get_table, tables

TABLES: Dict[str, TableSpec] = tables()  # the live registry (plugins' tables included)
__all__ = ["RESULTS", "TABLES", "TableSpec", "get_table", "trained_items", "evaluated_items"]


def trained_items(spec: TableSpec, table_cfg: Dict) -> Dict[str, str]:
    """``{item: data set}`` trained in mode ``train`` (an item is a model name or a published entry)."""
    if table_cfg["mode"] != "train":
        return {}
    return {m: spec.dataset_of(spec.entry(m)) for m in table_cfg["train"]}


def evaluated_items(spec: TableSpec, table_cfg: Dict, profile: str, root: Path = RESULTS
                    ) -> Dict[str, Tuple[str, str, str]]:
    """``{entry: (model to build, checkpoint path, data set)}`` the profile evaluates: our trained items (mode
    ``train``) or the official checkpoints listed by entry (mode ``checkpoints``). The model is the entry's
    full name, so its tag gives the published eval protocol (resolution; video: frames, views)."""
    mode = table_cfg["mode"]
    if mode == "train":
        pairs = [(spec.entry(m), str(spec.train_dir(m, profile, root) / "last.pth")) for m in table_cfg["train"]]
    elif mode == "checkpoints":
        pairs = [(spec.entry(e), str(path)) for e, path in (table_cfg["checkpoints"] or {}).items()]
    else:
        raise ValueError(f"tables.{spec.name}.{profile}.mode must be train or checkpoints, not {mode!r}")
    return {e.name: (e.name, ckpt, spec.dataset_of(e)) for e, ckpt in pairs}
