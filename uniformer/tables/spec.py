"""Table specs: each paper table is data — its published entries, the result files it reads and its tolerances.

Result files (written by the CLI stages, read by ``uniformer report`` and ``uniformer check``; Snakemake and
DVC use exactly these paths):

    results/profile/<table>/<profile>.json             uniformer profile --task <table> --json ...
    results/train/<table>/<item>/<profile>/            uniformer train <dataset> (metrics.json, last.pth)
    results/eval/<table>/<entry>/<profile>/metrics.json uniformer eval <dataset>

``<item>`` is a model as the table's ``train`` list names it (``uniformer_xxs``, or a video entry such as
``uniformer_small_video.k600_16x4``, whose tag picks the data set and clip protocol); each table gathers
the data sets of ``datasets`` (kinetics: kinetics400 + kinetics600; something: ssv1 + ssv2).
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Tuple

from ..config import PROJECT_ROOT
from ..models.catalog import Entry, imagenet_entries
from ..models.video_catalog import video_entries

RESULTS = Path("results")


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    entries: Callable[[], List[Entry]]
    datasets: Tuple[str, ...] = ("imagenet",)  # the `uniformer train|eval <dataset>` names it is measured on
    video: bool = False  # GFLOPs per view x views, top-5, class order columns
    accuracy: str = "top1"  # the paper_results.csv column of the accuracy metric
    accuracy_label: str = "Top-1 (%)"

    def dataset_of(self, entry) -> str:
        """The data set an entry is trained / evaluated on (video: its paper_results.csv task)."""
        return entry.row["task"] if self.video else self.datasets[0]

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
    "kinetics": TableSpec("kinetics", "Kinetics-400 / 600 video classification",
                          lambda: video_entries("kinetics400") + video_entries("kinetics600"),
                          ("kinetics400", "kinetics600"), video=True),
    "something": TableSpec("something", "Something-Something V1 / V2 video classification",
                           lambda: video_entries("ssv1") + video_entries("ssv2"), ("ssv1", "ssv2"), video=True),
}


def get_table(name: str) -> TableSpec:
    if name not in TABLES:
        raise KeyError(f"unknown table '{name}' (known: {sorted(TABLES)})")
    return TABLES[name]


# --- what a profile measures (shared by `uniformer stage`, the Snakefile and the reports) -----------------------
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
