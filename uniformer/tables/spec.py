"""Table specs: each paper table is data — its published entries, the result files it reads and its tolerances.

Result files (written by the CLI stages, read by ``uniformer report`` and ``uniformer check``; Snakemake and
DVC use exactly these paths):

    results/profile/<table>/<profile>.json             uniformer profile --task <table> --json ...
    results/train/<table>/<model>/<profile>/           uniformer train <table> (metrics.json, last.pth)
    results/eval/<table>/<entry>/<profile>/metrics.json uniformer eval <table>
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

from ..config import PROJECT_ROOT
from ..models.catalog import Entry, imagenet_entries

RESULTS = Path("results")


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    entries: Callable[[], List[Entry]]
    accuracy: str = "top1"  # the paper_results.csv column of the accuracy metric
    accuracy_label: str = "Top-1 (%)"

    def entry(self, name: str) -> Entry:
        """An entry by ``model.tag`` or by bare model name (the model's default pretrained tag, e.g. in1k_224)."""
        if "." not in name:
            from timm.models import get_pretrained_cfg

            cfg = get_pretrained_cfg(name)
            name = f"{name}.{cfg.tag}" if cfg is not None else name
        entries = self.entries()
        for e in entries:
            if e.name == name:
                return e
        raise KeyError(f"table {self.name}: no published entry '{name}' (known: {[e.name for e in entries]})")

    def profile_json(self, profile: str, root: Path = RESULTS) -> Path:
        return root / "profile" / self.name / f"{profile}.json"

    def train_dir(self, model: str, profile: str, root: Path = RESULTS) -> Path:
        return root / "train" / self.name / model / profile

    def eval_dir(self, entry: str, profile: str, root: Path = RESULTS) -> Path:
        return root / "eval" / self.name / entry / profile

    def report_stem(self, out_dir: Path = Path("reports")) -> Path:
        return out_dir / self.name

    def baseline(self, profile: str) -> Path:
        return PROJECT_ROOT / "reports" / "baselines" / f"{self.name}_{profile}.json"


TABLES: Dict[str, TableSpec] = {
    "imagenet": TableSpec("imagenet", "ImageNet-1K classification", imagenet_entries),
}


def get_table(name: str) -> TableSpec:
    if name not in TABLES:
        raise KeyError(f"unknown table '{name}' (known: {sorted(TABLES)})")
    return TABLES[name]
