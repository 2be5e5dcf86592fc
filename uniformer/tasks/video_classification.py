"""Video classification: Kinetics-400 / 600 and Something-Something V1 / V2 (the paper's video tables).

Data sets ``kinetics400``, ``kinetics600`` (table ``kinetics``), ``ssv1``, ``ssv2`` (table ``something``): split
lists over videos or frame folders (``data.kinetics``, ``data.something``, ``data.video``), their synthetic
twins (``data.synth_video``) and checker (``data.check_video``).

Clip settings come from the model's pretrained cfg (frames, stride or segments, crop, views), overridden by
the non-null keys of the recipe's ``clip`` block; the test set holds every temporal clip x spatial crop of a
video, scored by the evaluator as the mean of the views' logits.
"""
import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import timm

from ..config import ConfigError
from ..data import synth_video
from ..data.check_video import check_video_dataset
from ..data.kinetics import read_kinetics_split
from ..data.something import read_something_split
from ..data.video import FRAME_TEMPLATE, ClipSpec, VideoDataset, load_video_class_index, require_class_index
from ..data.transforms import train_img_size
from ..data.video_augment import ClipAugment
from ..models import video_catalog  # looked up at call time: tests substitute video_entries
from ..profiling.report import delta_pct, gflops_cell, params_cell
from ..reference import VIDEO_DATASETS
from .base import Column, DataAction, DatasetSpec, TableSpec, get_dataset, register_dataset, register_table, \
    register_task
from .base import accuracy_columns, speed_columns
from .classification import ClassificationTask

CLIP_KEYS = ("num_frames", "stride", "sampling", "crop_size", "train_scales", "test_scale", "random_flip",
             "target_fps", "use_offset", "temporal_clips", "spatial_crops")


def _under(root: Path, path: Optional[str]) -> Optional[Path]:
    """``path`` as given when absolute, else relative to the data root (where the user keeps the lists)."""
    if not path:
        return None
    p = Path(path)
    return p if p.is_absolute() else root / p


def views_override(eval_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """``temporal_clips`` / ``spatial_crops`` / ``test_scale`` set in ``eval.<dataset>.<profile>`` (null = published)."""
    return {k: eval_cfg[k] for k in ("temporal_clips", "spatial_crops", "test_scale") if eval_cfg.get(k) is not None}


def describe_clip(spec) -> Dict[str, Any]:
    """The clip protocol as flat values (for config.yaml, metrics.json and MLflow)."""
    return {"num_frames": spec.num_frames, "sampling": spec.sampling,
            "stride": spec.stride if spec.sampling == "dense" else None, "crop_size": spec.crop_size,
            "train_scales": list(spec.train_scales), "test_scale": spec.test_scale or spec.crop_size,
            "temporal_clips": spec.temporal_clips, "spatial_crops": spec.spatial_crops, "views": spec.num_views,
            "random_flip": spec.random_flip, "use_offset": spec.use_offset, "target_fps": spec.target_fps}


def check_classes(expected: Sequence[str], found: Sequence[str], where: str) -> None:
    """Our checkpoint's class order must be the data's: a different order scores near zero without an error."""
    if list(expected) != list(found):
        diff = next(i for i, (a, b) in enumerate(zip(list(expected) + [None] * len(found),
                                                      list(found) + [None] * len(expected))) if a != b)
        raise ConfigError(f"{where}: the checkpoint was trained with another class order (first difference at "
                          f"label {diff}); evaluate with the class index it was trained with")


class VideoData:
    """Kinetics (``path,label`` / ``path label`` lists or the annotation CSV over videos) and
    Something-Something (``id frames label`` lists over frame folders, or V2's JSON over webm files).

    ``data.<dataset>.<profile>`` keys: ``root``, ``train_list``, ``val_list`` (relative to the root unless
    absolute), ``class_index`` (file or list of files, the class order of the published checkpoints;
    null = labels as the lists give them), ``labels`` (SSV2 labels JSON), ``frame_template``, ``synth``.
    """

    def __init__(self, dataset: str, root: os.PathLike, data_cfg: Dict[str, Any]):
        self.dataset, self.root, self.cfg = dataset, Path(root), data_cfg
        for key in ("train_list", "val_list"):
            if not data_cfg.get(key):
                raise ConfigError(f"params.yaml: data.{dataset}.<profile> needs '{key}' (a split list under the "
                                  f"data root, e.g. train.csv / val.csv for Kinetics)")

    def ensure(self) -> None:
        """Smoke profile: write the synthetic set of ``synth`` if the root has no manifest / val list yet."""
        if (self.root / "manifest.json").is_file() or self.list_path("val").is_file() or not self.cfg.get("synth"):
            return
        s = dict(self.cfg["synth"])
        kind = s.pop("dataset")
        print(f"{self.root}: no data set; writing the synthetic {kind} one ({s})", file=sys.stderr)
        WRITERS[kind](self.root, **s)

    def list_path(self, split: str) -> Path:
        return _under(self.root, self.cfg[f"{split}_list"])

    def class_index_paths(self) -> Optional[List[Path]]:
        ci = self.cfg.get("class_index")
        if not ci:
            return None
        return [_under(self.root, p) for p in ([ci] if isinstance(ci, str) else ci)]

    def class_index_desc(self) -> str:
        paths = self.class_index_paths()
        return ", ".join(map(str, paths)) if paths else "labels as given by the split lists (no class index)"

    def classes(self) -> List[str]:
        paths = self.class_index_paths()
        if paths:
            return load_video_class_index(paths)
        # no class index: label k is simply "k" (enough to train; an official checkpoint needs the real order)
        items = self._read("train" if self.list_path("train").is_file() else "val", None)
        return [str(k) for k in range(max(it.label for it in items) + 1)]

    def eval_classes(self, trained: Optional[List[str]], checkpoint: str, num_classes: int) -> List[str]:
        """Ours (``trained``): its classes, which must be the class index's order if one is set; official: the
        class-index file is required (the published order is not alphabetical)."""
        if trained is None:
            return require_class_index(self.class_index_paths(), checkpoint, num_classes)
        if self.class_index_paths():
            check_classes(trained, self.classes(), f"{checkpoint} vs {self.class_index_desc()}")
        return trained

    def _read(self, split: str, classes):
        path = self.list_path(split)
        if not path.is_file():
            raise ConfigError(f"{path}: split list not found; set data.{self.dataset}.<profile>.{split}_list or "
                              f"check the data root ({self.root}); `uniformer data check {self.dataset}` lists "
                              "what is there")
        if self.dataset.startswith("kinetics"):
            return read_kinetics_split(path, self.root, classes)
        return read_something_split(path, self.root, classes, _under(self.root, self.cfg.get("labels")),
                                    self.cfg.get("frame_template") or FRAME_TEMPLATE)

    def clip_spec(self, model, clip: Optional[Dict[str, Any]] = None):
        """The model's published clip protocol, with the non-null ``clip`` keys of the recipe on top."""
        over = {k: (tuple(v) if k == "train_scales" else v) for k, v in (clip or {}).items()
                if v is not None and k in CLIP_KEYS}
        unknown = sorted(set(clip or {}) - set(CLIP_KEYS))
        if unknown:
            raise ConfigError(f"clip: unknown key(s) {unknown} (known: {list(CLIP_KEYS)})")
        cfg = dict(model.pretrained_cfg)
        spec = ClipSpec.from_pretrained_cfg(cfg)
        if "crop_size" in over and "train_scales" not in over:  # keep SlowFast's 256/224 jitter ratio
            c = int(over["crop_size"])
            over["train_scales"] = (c, c) if spec.train_scales[0] == spec.crop_size else \
                (round(c * spec.train_scales[0] / spec.crop_size), round(c * spec.train_scales[1] / spec.crop_size))
        return ClipSpec.from_pretrained_cfg(cfg, **over)

    def _dataset(self, split: str, mode: str, spec, classes, augment=None):
        return VideoDataset(self._read(split, classes), spec, mode, classes, name=str(self.list_path(split)),
                            augment=augment)

    def train_set(self, cfg, model, classes):
        """Random clips with the recipe's ``aug`` block (RandAugment, relative-area crop, erasing, repeats)."""
        return self._dataset("train", "train", self.clip_spec(model, cfg.get("clip")), classes,
                             ClipAugment.from_cfg(cfg.get("aug")))

    def val_set(self, cfg, model, classes):
        return self._dataset("val", "val", self.clip_spec(model, cfg.get("clip")), classes)

    def train_protocol(self, cfg, model, train_set) -> Dict[str, Any]:
        return {"img_size": train_img_size(cfg, model), "clip_protocol": describe_clip(train_set.spec)}

    def test_set(self, eval_cfg, model, classes, train_cfg):
        """(every published view of each val video: ``(V, C, T, H, W)`` per sample, the clip protocol)."""
        ds = self._dataset("val", "test", self.clip_spec(model, {**(train_cfg.get("clip") or {}),
                                                                  **views_override(eval_cfg)}), classes)
        protocol = describe_clip(ds.spec)
        return ds, {**protocol, "img_size": protocol["crop_size"]}

    def manifest(self) -> str:
        """sha256 of the synthetic manifest, else of the split lists and class index (cheap, content-based)."""
        m = self.root / "manifest.json"
        if m.is_file():
            return json.loads(m.read_text()).get("sha256") or hashlib.sha256(m.read_bytes()).hexdigest()
        h = hashlib.sha256()
        for p in [self.list_path("train"), self.list_path("val")] + (self.class_index_paths() or []):
            if p.is_file():
                h.update(p.name.encode() + b"\0" + p.read_bytes())
        return h.hexdigest()


class VideoClassification(ClassificationTask):
    name = "video_classification"
    # the clip protocol (``CLIP_KEYS``), the training augmentation (``data.video_augment.AUG_KEYS``), initial weights
    recipe_keys = ("clip", "aug", "init")
    channels_last = "channels_last_3d"
    # the paper publishes GFLOPs over all test views and no params; one forward pass is one view
    gflops_column = "gflops_per_view"
    params_published = False
    flops_checks = ("GFLOPs per view", "total")
    plot_gflops = "gflops_total"  # as the paper plots it
    plot_xlabel = "GFLOPs over all test views (multiply-adds, log scale)"
    summary_keys = ("top5", "gflops_total")
    report_caveat = "; the paper publishes no parameter counts for its video models"
    report_legend = ("Params / GFLOPs: parameter count and fvcore multiply-adds (the paper's FLOPs) of one view (one "
                     "clip of the entry's frames at its resolution); the paper publishes the total over its test views "
                     "(temporal clips × spatial crops), so the measured total is per view × views. clips/s: fp32 "
                     "inference throughput of one view on this machine, and the achieved 2·FLOPs·clips/s as a "
                     "fraction of the fp32 GEMM rate measured in the same run. Class order: the class-index file the "
                     "evaluation used (the published checkpoints' order is not alphabetical).")
    profile_unit, profile_rate, profile_noun = "clip", "clips/s", "clip"
    profile_section = "video"  # profile.<profile>.video overrides the image settings
    profile_off = ("channels_last", "fold_bn")  # they rewrite 2-D models only (4-D tensors, BatchNorm2d)
    profile_legend = (
        "Published GFLOPs are the entry's row of paper_results.csv: the README's total over the test views (spatial "
        "crops × temporal clips) and that total / views per view; the README publishes no params. Ours: parameter "
        "count and fvcore multiply-adds (the paper's \"FLOPs\") for one view (one clip of T frames at H × H, batch "
        "1), × views for the total. Δ = ours / published − 1.",
        "Verdict: `ok` when our GFLOPs per view, and per view × views against the published total, are within "
        "{tol}%.",
        "Timing `as <entry>`: the entry has the same network and input as that one (only the classifier differs: "
        "400 / 600 / 174 classes) and reuses its FLOP count (plus the exact head difference) and timings.",
    )

    def check_recipe(self, cfg, where):
        if (cfg["init"] or {}).get("inflate") not in (None, "mean", "center"):
            raise ConfigError(f"init.inflate={cfg['init']['inflate']!r}: use mean (the official 2D->3D inflation), "
                              "center or null")

    def report_fields(self, table, entry, prof, ev, comparable):
        """Per-view x views totals, top-5, the clip protocol and class order of a row."""
        e, views = entry, entry.views
        pub_total = _num(e.row["gflops"])
        total = prof["gflops"] * views if prof else None
        top5_pub, top5 = _num(e.row.get("top5")), (ev or {}).get("top5")
        clip = (ev or {}).get("num_frames")
        return {
            "dataset": e.row["task"], "frames": e.num_frames,
            "stride": int(e.row["sampling_stride"]) if e.row.get("sampling_stride") else None,
            "views": views, "views_desc": f"{e.row['temporal_clips']}×{e.row['spatial_crops']}",
            "gflops_total_published": pub_total, "gflops_total": total,
            "gflops_total_delta_pct": 100.0 * (total - pub_total) / pub_total if total is not None and pub_total
            else None,
            "top5_published": top5_pub, "top5": top5,
            "top5_delta": top5 - top5_pub if (top5 is not None and top5_pub is not None and comparable) else None,
            "class_index": (ev or {}).get("class_index") or "–",
            "eval_protocol": (f"{clip} frames, {ev.get('views')} views, {ev.get('crop_size')} px" if ev and clip
                              else "–"),
        }

    def report_columns(self, table):
        frames = lambda r: f"{r['frames']}×{r['stride']}" if r["stride"] else f"{r['frames']} (segments)"  # noqa
        return ([Column("Model", "model", align="l"),
                 Column("Data", cell=lambda r: get_dataset(r["dataset"]).short or r["dataset"]),
                 Column("Frames", cell=frames), Column("Res.", "resolution"),
                 Column("Views (clips×crops)", "views_desc"), Column("Params (M)", "params_m", compare="pct"),
                 Column("GFLOPs/view", "gflops", compare="pct"),
                 Column("GFLOPs total", "gflops_total", compare="pct", measured="meas. (×views)")]
                + accuracy_columns(table.accuracy, table.accuracy_label) + accuracy_columns("top5", "Top-5 (%)")
                + speed_columns("clips/s")
                + [Column("Accuracy data", "data_source", align="l"), Column("Class order", "class_index", align="l"),
                   Column("Verdict", "verdict", align="l")])

    def profile_title(self, what):
        return f"UniFormer video models ({what}): params, FLOPs per view × views, speed"

    def profile_inputs(self, entry):
        return tuple(entry.input_size)

    def profile_build_key(self, entry):
        return entry.model, entry.num_classes, entry.attn_fp32

    def profile_model(self, entry):
        """The entry's network: its head, and the light models' fp32-attention switch (which the S/B constructors
        lack); frames and resolution are input shapes, not constructor arguments."""
        kw = {"attn_fp32": entry.attn_fp32} if entry.row["model"] in video_catalog.LIGHT_VIDEO_MODELS else {}
        return timm.create_model(entry.model, num_classes=entry.num_classes, **kw)

    def profile_fields(self, entry):
        return {"task": entry.row["task"], "input_size": tuple(entry.input_size),
                "views": int(entry.row["spatial_crops"]) * int(entry.row["temporal_clips"])}

    # profile report rows (``profiling.report``): one forward pass is one view; the README publishes the total
    def profile_row_fields(self, result):
        _, frames, height, _ = result["input_size"]
        return {"task": result["task"], "frames": frames, "resolution": height, "views": result["views"]}

    def profile_totals(self, result):
        """Ours per view x views against the published total: a check of its own, since the published per-view
        figure is derived from the total."""
        pub, ours = _num(result["row"].get("gflops")), result["gmacs"] * result["views"]
        d = delta_pct(ours, pub)
        return {"gflops_total_published": pub, "gflops_total": ours, "gflops_total_delta_pct": d}, d

    def profile_row_extra(self, result):
        return {"timing_shared_with": result.get("timing_shared_with")}

    def profile_cells(self, row):
        return {"Frames × res": f"{row['frames']} × {row['resolution']}",
                "Params M (pub / ours / Δ)": params_cell(row),
                "GFLOPs per view (pub / ours / Δ)": gflops_cell(row, "gflops"), "Views": str(row["views"]),
                "GFLOPs total (pub / ours × views / Δ)": gflops_cell(row, "gflops_total"),
                "Timing": f"as `{row['timing_shared_with']}`" if row.get("timing_shared_with") else "own"}


def _num(v) -> Optional[float]:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# --- `uniformer data synth kinetics|ssv1|ssv2`, `uniformer data check <dataset>` ---------------------------------
WRITERS = {"kinetics": synth_video.write_synthetic_kinetics, "ssv2": synth_video.write_synthetic_ssv2,
           "ssv1": synth_video.write_synthetic_ssv1}
SYNTH_DEFAULTS = {  # writer -> (classes, train/class, val/class, frames)
    "kinetics": (5, 8, 4, 32),
    "ssv2": (4, 8, 4, 16),
    "ssv1": (4, 8, 4, 16),
}


def _synth_action(name: str) -> DataAction:
    classes, train, val, frames = SYNTH_DEFAULTS[name]

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, help="output folder (a previous synthetic set there is replaced)")
        p.add_argument("--classes", type=int, default=classes)
        p.add_argument("--train-per-class", type=int, default=train)
        p.add_argument("--val-per-class", type=int, default=val)
        p.add_argument("--frames", type=int, default=frames,
                       help="frames per video" + (" (SSV: minimum; lengths vary up to 1.5x)" if name != "kinetics"
                                                  else ""))
        p.add_argument("--size", type=int, default=64, help="frame side in pixels (even)")
        p.add_argument("--seed", type=int, default=0)

    def synth(args) -> int:
        try:
            manifest = WRITERS[name](args.out, classes=args.classes, train_per_class=args.train_per_class,
                                     val_per_class=args.val_per_class, frames=args.frames, size=args.size,
                                     seed=args.seed)
        except (ValueError, FileExistsError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{args.out}: {name} synthetic, {args.classes} classes, {len(manifest['files'])} files, "
              f"sha256 {manifest['sha256']}")
        return 0
    return DataAction(name, add, synth)


def _check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="data set root folder")
    p.add_argument("--workers", type=int, default=0, help="decode in this many processes")
    p.add_argument("--list", action="extend", nargs="+", metavar="FILE",  # `--list A B` and `--list A --list B`
                   help="split list to check (repeatable); default: the standard list names found in --root")
    p.add_argument("--class-index", nargs="+", metavar="FILE",
                   help="class-index file(s) (e.g. the official kinetics_400_categroies.txt, or the two "
                        "Kinetics-600 lists); checks class names and the label range")
    p.add_argument("--labels", metavar="JSON", help="SSV2 labels JSON (default: next to the split JSON)")
    p.add_argument("--frame-template", default=None, help="frame file names in a frame folder (img_{:05d}.jpg)")


def _check_action(name: str) -> DataAction:
    def check(args):
        return check_video_dataset(name, args.root, args.list, args.class_index, args.labels,
                                   args.frame_template or FRAME_TEMPLATE, args.workers)
    return DataAction(name, _check_arguments, check, _check_config_args)


def _check_config_args(data: Dict[str, Any]) -> List[str]:
    """The split lists, class index, labels JSON and frame template of ``data.<name>.<settings>`` as options."""
    root = data["root"]
    under = lambda p: str(p if Path(p).is_absolute() else Path(root) / p)  # noqa: E731
    args = ["--list"] + [under(data[key]) for key in ("train_list", "val_list")]
    ci = data.get("class_index")
    if ci:
        args += ["--class-index"] + [under(p) for p in ([ci] if isinstance(ci, str) else ci)]
    if data.get("labels"):
        args += ["--labels", under(data["labels"])]
    if data.get("frame_template"):
        args += ["--frame-template", data["frame_template"]]
    return args


TASK = register_task(VideoClassification())
KINETICS_SYNTH = _synth_action("kinetics")  # one writer for both Kinetics sets
for _name, _table, _synth in (("kinetics400", "kinetics", KINETICS_SYNTH), ("kinetics600", "kinetics", KINETICS_SYNTH),
                              ("ssv1", "something", _synth_action("ssv1")), ("ssv2", "something", _synth_action("ssv2"))):
    register_dataset(DatasetSpec(
        _name, TASK, _table, VIDEO_DATASETS[_name].title, VideoData, short=VIDEO_DATASETS[_name].short,
        entries=lambda d=_name: video_catalog.video_entries(d), check=_check_action(_name), synth=_synth,
        real_sources=(_name,)))
register_table(TableSpec("kinetics", "Kinetics-400 / 600 video classification", TASK, ("kinetics400", "kinetics600"),
                         short_title="Kinetics-400/600"))
register_table(TableSpec("something", "Something-Something V1 / V2 video classification", TASK, ("ssv1", "ssv2"),
                         short_title="Something-Something V1/V2"))
