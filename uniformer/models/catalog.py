"""The published entries of each table, as (registered model, pretrained tag, input size, paper row).

Derived from the package's paper_results.csv, so every consumer (profile report, tables, tests)
walks the same list.
"""
from dataclasses import dataclass
from typing import Dict, List

from ..reference import primary_rows
from .cfgs import pretrained_tag, registered_name


class TaggedEntry:
    """A published entry's timm name ``<model>.<tag>`` (image and video entries alike)."""

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"


@dataclass(frozen=True)
class Entry(TaggedEntry):
    model: str  # registered timm name
    tag: str  # pretrained tag, e.g. in1k_384
    img_size: int
    row: Dict[str, str]  # the paper_results.csv row (strings)

    @property
    def label(self) -> str:
        # the README prints S† / S +TL for both head dims: the re-trained head_dim-64 models say so, to tell rows apart
        dim64 = " (head dim 64)" if "_dim64" in self.model else ""
        tl = " +TL" if self.row.get("token_labeling") == "yes" else ""
        return f"{self.row['model_label']}{dim64}{tl} @{self.img_size}"


def imagenet_entries() -> List[Entry]:
    """One entry per published ImageNet-1K row (22), in the README's order."""
    out = []
    for row in primary_rows("imagenet"):
        out.append(Entry(registered_name(row), pretrained_tag(row), int(row["resolution"].split("x")[0]), dict(row)))
    return out


def manifest_model_name(manifest_stem: str) -> str:
    """Model a state_dict manifest describes: ``tl_<official>`` -> ``<official>_tl``, image ones as named."""
    if manifest_stem.startswith("tl_"):
        return manifest_stem[3:] + "_tl"
    return manifest_stem
