"""The project's copy of the published numbers (paper_results.csv) and what tests need of the manifests.

Copied from the reference data extracted from the official Sense-X/UniFormer READMEs (commit 52a0415e);
nothing reads outside the package at run time.
"""
import csv
import functools
from importlib import resources
from typing import Dict, List


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
