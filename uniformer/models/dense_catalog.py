"""The published entries of the dense tables (COCO detection, ADE20K, COCO pose), from paper_results.csv.

An entry is named by its official experiment, as its full-model manifest is: the config's folder, plus
``__<test config>`` when the row is one of several test configs of one checkpoint (the global-trained
segmentors tested with stage 3 global / hybrid-32 / window-32), e.g. ``fpn_xxs``,
``upernet_global_small__test_config_h32``, ``top_down_256x192_global_small``. That name is also the model:
``build_segmentor`` / ``build_pose_model`` / ``build_detector`` take it.
"""
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Dict, List, Tuple

from ..reference import primary_rows

# paper_results.csv ``framework`` -> how the table names it
FRAMEWORKS = {"semantic_fpn": "Semantic FPN", "upernet": "UperNet", "mask_rcnn": "Mask R-CNN",
              "cascade_mask_rcnn": "Cascade Mask R-CNN", "top_down (TopDownSimpleHead)": "Top-down"}


def experiment_name(row: Dict[str, str]) -> str:
    """``semantic_segmentation/exp/upernet_global_small/test_config_h32.py`` -> ``upernet_global_small__test_config_h32``."""
    path = PurePosixPath(row["config"])
    return path.parent.name if path.stem == "config" else f"{path.parent.name}__{path.stem}"


@dataclass(frozen=True)
class DenseEntry:
    name: str  # the official experiment (full-model manifest stem); also the model to build
    input_hw: Tuple[int, int]  # the input the published FLOPs are counted at (pose: the crop)
    row: Dict[str, str]  # the paper_results.csv row (strings)

    @property
    def model(self) -> str:
        return self.name

    @property
    def tag(self) -> str:
        return ""

    @property
    def img_size(self) -> str:
        return "x".join(map(str, self.input_hw))

    @property
    def label(self) -> str:
        schedule = self.row.get("lr_schedule", "")
        schedule = "" if schedule.endswith("epochs") else f" {schedule}"  # pose: one schedule for all
        return f"{FRAMEWORKS.get(self.row['framework'], self.row['framework'])}{schedule} {self.row['model_label']}"


def dense_entries(task: str) -> List[DenseEntry]:
    """One entry per primary paper_results.csv row of ``task`` (``ade20k``, ``coco_pose``, ``coco_det``)."""
    out = []
    for row in primary_rows(task):
        h, w = (int(v) for v in row["resolution"].split()[0].split("x"))
        out.append(DenseEntry(experiment_name(row), (h, w), dict(row)))
    return out
