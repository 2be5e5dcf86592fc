"""The project's copy of the published numbers (paper_results.csv) and what tests need of the manifests.

Copied from the reference data extracted from the official Sense-X/UniFormer READMEs (commit 52a0415e);
nothing reads outside the package at run time.
"""
import csv
import functools
from importlib import resources
from typing import Dict, List, NamedTuple


class VideoDataFacts(NamedTuple):
    """What is fixed about one of the paper's video data sets."""
    title: str  # human name (also paper_results.csv ``pretrain`` of the models fine-tuned from it)
    short: str  # abbreviation in table cells
    tag: str  # in pretrained tags (``k400_8x8``) and entry labels
    num_classes: int


# The paper's video data sets by name: ``uniformer train|eval|data check <name>``, paper_results.csv ``task``.
# The one place these facts are written (models.video_catalog, data.check_video, tasks.video_classification).
VIDEO_DATASETS: Dict[str, VideoDataFacts] = {
    "kinetics400": VideoDataFacts("Kinetics-400", "K400", "k400", 400),
    "kinetics600": VideoDataFacts("Kinetics-600", "K600", "k600", 600),
    "ssv1": VideoDataFacts("Something-Something V1", "SSV1", "ssv1", 174),
    "ssv2": VideoDataFacts("Something-Something V2", "SSV2", "ssv2", 174),
}


@functools.lru_cache(maxsize=None)
def paper_results() -> List[Dict[str, str]]:
    """Every published row (190), as strings exactly as in the CSV."""
    with resources.files(__package__).joinpath("paper_results.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def primary_rows(task: str) -> List[Dict[str, str]]:
    """The task README's own rows (``primary=yes``): one per published entry, no summary duplicates."""
    return [r for r in paper_results() if r["task"] == task and r["primary"] == "yes"]


def imagenet_rows() -> List[Dict[str, str]]:
    return primary_rows("imagenet")
