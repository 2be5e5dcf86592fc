"""Published video entries (Kinetics-400/600, Something-Something V1/V2) and their pretrained cfgs.

Everything comes from the package's ``paper_results.csv`` (the task READMEs' own rows), like the
ImageNet cfgs of ``cfgs.py``: no URL, nothing is downloaded.

Registered model of a row: ``<official model>_video``, ``<official model>_ls_video`` for the light
rows trained with layer scale (``Uniformer_light_ls_fp32``).

Pretrained tag scheme (``<model>.<tag>``)::

    <data>_<T>x<stride>      dense sampling: T frames, one every <stride>   k400_8x8, k600_16x4
    <data>_<T>f              segment-based (sparse) sampling of T frames    k400_16f, ssv2_32f
    ... _<res>               appended when the crop is not 224              k400_16f_160
    ... _from_<k400|k600>    Something-Something models: the Kinetics       ssv2_16f_from_k600
                             model they were fine-tuned from

with <data> in k400, k600, ssv1, ssv2. ``input_size`` is (3, T, H, W); ``num_classes`` 400 / 600 / 174.
The first tag of a model (Kinetics-400, README order) is its default.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from timm.models import generate_default_cfgs

from ..reference import VIDEO_DATASETS, primary_rows
from .catalog import TaggedEntry
from .cfgs import UniFormerPretrainedCfg

VIDEO_TASKS = tuple(VIDEO_DATASETS)
LIGHT_VIDEO_MODELS = ("uniformer_xxs", "uniformer_xs")
# SlowFast DATA.MEAN / DATA.STD (slowfast/config/defaults.py), on [0, 1] RGB frames
VIDEO_MEAN = (0.45, 0.45, 0.45)
VIDEO_STD = (0.225, 0.225, 0.225)


@dataclass
class UniFormerVideoPretrainedCfg(UniFormerPretrainedCfg):
    """Image cfg fields plus the video protocol. ``paper_gflops`` is per view (one clip, one crop),
    comparable with a FLOP count of one forward pass; ``paper_gflops_total`` is the published
    number over all test views."""
    num_frames: Optional[int] = None
    sampling_stride: Optional[int] = None  # None for segment-based sampling
    frame_sampling: Optional[str] = None
    spatial_crops: Optional[int] = None
    temporal_clips: Optional[int] = None
    paper_gflops_total: Optional[float] = None
    pretrain: Optional[str] = None
    attn_fp32: Optional[bool] = None  # official class ran attention with autocast off (``*_fp32``)
    official_config: Optional[str] = None


def video_registered_name(row: Dict[str, str]) -> str:
    return row["model"] + ("_ls" if row["layer_scale"] == "yes" else "") + "_video"


def video_pretrained_tag(row: Dict[str, str]) -> str:
    frames = int(row["input_frames"])
    res = int(row["resolution"].split("x")[0])
    tag = VIDEO_DATASETS[row["task"]].tag + "_" + (f"{frames}x{row['sampling_stride']}" if row["sampling_stride"]
                                                   else f"{frames}f")
    if res != 224:
        tag += f"_{res}"
    if row["task"] in ("ssv1", "ssv2"):
        tag += "_from_" + {d.title: d.tag for d in VIDEO_DATASETS.values()}[row["pretrain"]]
    return tag


def _attn_fp32(row: Dict[str, str]) -> bool:
    return row["model"] in LIGHT_VIDEO_MODELS and row["state_dict_manifest"].endswith("_fp32.json")


def _opt_float(s: str) -> Optional[float]:
    return float(s.rstrip("*")) if s else None


@dataclass(frozen=True)
class VideoEntry(TaggedEntry):
    model: str  # registered timm name
    tag: str  # pretrained tag, e.g. k400_16x4
    input_size: Tuple[int, int, int, int]  # (C, T, H, W)
    num_classes: int
    attn_fp32: bool
    row: Dict[str, str]  # the paper_results.csv row (strings)

    @property
    def img_size(self) -> int:
        return self.input_size[2]

    @property
    def num_frames(self) -> int:
        return self.input_size[1]

    @property
    def views(self) -> int:
        """Test views of the published protocol: temporal clips x spatial crops."""
        return int(self.row["temporal_clips"]) * int(self.row["spatial_crops"])

    @property
    def label(self) -> str:
        _, t, h, _ = self.input_size
        stride = f"x{self.row['sampling_stride']}" if self.row["sampling_stride"] else ""
        pre = f" (from {self.row['pretrain']})" if self.row["task"] in ("ssv1", "ssv2") else ""
        return f"{self.row['model_label']} {VIDEO_DATASETS[self.row['task']].tag} {t}{stride}@{h}{pre}"


def _entry(row: Dict[str, str]) -> VideoEntry:
    res = int(row["resolution"].split("x")[0])
    return VideoEntry(video_registered_name(row), video_pretrained_tag(row), (3, int(row["input_frames"]), res, res),
                      VIDEO_DATASETS[row["task"]].num_classes, _attn_fp32(row), dict(row))


def video_entries(task: Optional[str] = None) -> List[VideoEntry]:
    """One entry per published row of ``task`` (README order), or of every video task in VIDEO_TASKS."""
    tasks = VIDEO_TASKS if task is None else (task,)
    for t in tasks:
        if t not in VIDEO_TASKS:
            raise ValueError(f"unknown video task {t!r}; expected one of {VIDEO_TASKS}")
    return [_entry(r) for t in tasks for r in primary_rows(t)]


def _cfg(e: VideoEntry) -> UniFormerVideoPretrainedCfg:
    row, light = e.row, e.row["model"] in LIGHT_VIDEO_MODELS
    return UniFormerVideoPretrainedCfg(
        url="",
        num_classes=e.num_classes,
        input_size=e.input_size,
        crop_pct=1.0,  # test: short side resized to the crop size, centre (or 3-crop) of it
        interpolation="bilinear",
        mean=VIDEO_MEAN,
        std=VIDEO_STD,
        first_conv="patch_embed1.proj.0" if light else "patch_embed1.proj",
        classifier="head",
        license="mit",
        paper_ids="arXiv:2201.09450" if light else "arXiv:2201.04676",
        paper_name=f"{row['model_label']} video",
        paper_top1=_opt_float(row["top1"]),
        paper_params_m=_opt_float(row["params_m"]),
        paper_gflops=_opt_float(row["gflops_per_view"]),
        checkpoint_file=row["checkpoint_file"] or None,
        checkpoint_url=row["checkpoint_url"] or None,
        num_frames=e.input_size[1],
        sampling_stride=int(row["sampling_stride"]) if row["sampling_stride"] else None,
        frame_sampling=row["frame_sampling"],
        spatial_crops=int(row["spatial_crops"]),
        temporal_clips=int(row["temporal_clips"]),
        paper_gflops_total=_opt_float(row["gflops"]),
        pretrain=row["pretrain"],
        attn_fp32=e.attn_fp32,
        official_config=row["config"] or None,
    )


def generate_video_default_cfgs(model_names: Sequence[str]) -> dict:
    """default_cfgs for the given registered video models; each model's first Kinetics-400 row is its default."""
    cfgs = {}
    for e in video_entries():
        if e.model in model_names:
            assert e.name not in cfgs, f"two published rows map to {e.name}"
            cfgs[e.name] = _cfg(e)
    missing = set(model_names) - {k.split(".")[0] for k in cfgs}
    assert not missing, f"no published video row for {sorted(missing)}"
    return generate_default_cfgs(cfgs)
