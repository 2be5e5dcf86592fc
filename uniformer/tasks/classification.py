"""Classification, shared by the image and video tasks: model factory, loss, Mixup, metrics, eval files.

Model outputs in training mode and their loss (``TrainLoss``):

- plain models: logits -> criterion(logits, target);
- light models (``uniformer_xxs/xs``): (pooled logits, class-token logits) -> 0.5 x each (official recipe);
- token-labelling models (``*_tl``) with their auxiliary head: (logits, per-token logits, MixToken box). With
  token-label maps (recipe ``token_label``; targets ``{"label", "map", "box"}``, ``data.token_labels``) the
  official TokenLabelCrossEntropy: soft CE of the class logits against the map's class target mixed by
  MixToken's box area, plus ``dense_weight`` x soft CE of every stage-4 token against its cropped map target.
  Without maps a recipe drops the auxiliary head and MixToken (``engine.recipe._without_token_labels``); a model
  built with them anyway trains its class logits on the class target mixed by the box area.

Metrics are additive counts (``AccuracyCounter``) so they sum exactly over batches and processes;
``topk_correct`` matches torchmetrics' ``MulticlassAccuracy(top_k=k, average="micro")`` (tested), k larger
than the number of classes clamped to it.
"""
import csv
import io
from typing import Any, Dict, Sequence

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

from ..config import ConfigError
from ..data.token_labels import mixtoken_lam, soft_ce, token_label_targets
from .base import Task


# --- metrics ----------------------------------------------------------------------------------------------
def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> Dict[int, int]:
    """``{k: number of rows whose target is among the k highest logits}``."""
    maxk = min(max(ks), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices
    hit = pred.eq(targets.view(-1, 1))
    return {k: int(hit[:, :min(k, maxk)].any(dim=1).sum()) for k in ks}


class AccuracyCounter:
    """Running top-1 / top-5 / loss / per-class counts over batches of (logits, targets)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.n = 0
        self.correct1 = 0
        self.correct5 = 0
        self.loss_sum = 0.0
        self.class_total = torch.zeros(num_classes, dtype=torch.int64)
        self.class_correct = torch.zeros(num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        logits = logits.float()
        counts = topk_correct(logits, targets, (1, 5))
        self.n += int(targets.numel())
        self.correct1 += counts[1]
        self.correct5 += counts[5]
        self.loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        t = targets.cpu()
        hit = (logits.argmax(dim=1).cpu() == t).long()
        self.class_total += torch.bincount(t, minlength=self.num_classes)
        self.class_correct += torch.bincount(t, weights=hit, minlength=self.num_classes).long()

    def as_vector(self) -> torch.Tensor:
        """Every count as one float64 vector (for an all-reduce)."""
        head = torch.tensor([self.n, self.correct1, self.correct5, self.loss_sum], dtype=torch.float64)
        return torch.cat([head, self.class_total.double(), self.class_correct.double()])

    def load_vector(self, v: torch.Tensor) -> "AccuracyCounter":
        c = self.num_classes
        self.n, self.correct1, self.correct5 = int(v[0]), int(v[1]), int(v[2])
        self.loss_sum = float(v[3])
        self.class_total = v[4:4 + c].round().long()
        self.class_correct = v[4 + c:4 + 2 * c].round().long()
        return self

    def summary(self) -> Dict[str, float]:
        n = max(self.n, 1)
        return {"top1": 100.0 * self.correct1 / n, "top5": 100.0 * self.correct5 / n, "loss": self.loss_sum / n,
                "samples": self.n}

    def per_class_csv(self, classes: Sequence[str]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["label", "class", "samples", "correct", "top1"])
        for k, name in enumerate(classes):
            n, c = int(self.class_total[k]), int(self.class_correct[k])
            w.writerow([k, name, n, c, f"{100.0 * c / n:.4f}" if n else ""])
        return buf.getvalue()


# --- model, Mixup, loss -----------------------------------------------------------------------------------
def build_model(cfg: Dict[str, Any], num_classes: int) -> nn.Module:
    """The recipe's registered timm model (``model``, ``model_kwargs``, ``img_size``, ``drop``, ``drop_path``)."""
    kwargs = dict(cfg.get("model_kwargs") or {})
    if cfg.get("img_size"):
        kwargs["img_size"] = int(cfg["img_size"])
    return timm.create_model(cfg["model"], pretrained=False, num_classes=num_classes, drop_rate=float(cfg["drop"]),
                             drop_path_rate=float(cfg["drop_path"]), **kwargs)


def is_token_label_model(name: str) -> bool:
    """Is the registered model ``name`` (tag allowed) a token-labelling one (auxiliary head + MixToken)?"""
    from ..models.variants import IMAGE_ARGS
    return IMAGE_ARGS.get(name.split(".")[0], {}).get("head") == "token_label"


def has_token_labelling(model: nn.Module) -> bool:
    return getattr(model, "aux_head", None) is not None


def mixup_active(cfg: Dict[str, Any]) -> bool:
    return float(cfg["mixup"]) > 0 or float(cfg["cutmix"]) > 0 or cfg["cutmix_minmax"] is not None


class ClipMixup:
    """timm ``Mixup`` for clips: ``(B, C, T, H, W)`` is mixed as ``(B, C*T, H, W)``, so every frame of a clip
    gets the same mixing weight and the same CutMix box (timm's CutMix would cut along T and H of a 5-D
    tensor)."""

    def __init__(self, mixup):
        self.mixup = mixup

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        if x.dim() != 5:
            return self.mixup(x, target)
        b, c, t, h, w = x.shape
        x, target = self.mixup(x.reshape(b, c * t, h, w), target)
        return x.reshape(b, c, t, h, w), target


def build_mixup(cfg: Dict[str, Any], num_classes: int):
    """timm ``Mixup`` (it also applies label smoothing to the mixed targets) wrapped for clips, or None."""
    if not mixup_active(cfg):
        return None
    return ClipMixup(Mixup(mixup_alpha=float(cfg["mixup"]), cutmix_alpha=float(cfg["cutmix"]),
                 cutmix_minmax=cfg["cutmix_minmax"], prob=float(cfg["mixup_prob"]),
                 switch_prob=float(cfg["mixup_switch_prob"]), mode=cfg["mixup_mode"],
                 label_smoothing=float(cfg["smoothing"]), num_classes=num_classes))


class TrainLoss(nn.Module):
    """Loss of one training forward, for every UniFormer output form (see the module docstring)."""

    def __init__(self, num_classes: int, smoothing: float, soft_targets: bool, dense_weight: float = 1.0):
        super().__init__()
        self.num_classes, self.smoothing, self.dense_weight = num_classes, smoothing, dense_weight
        self.soft = SoftTargetCrossEntropy()
        if soft_targets:  # Mixup/CutMix: targets arrive mixed and smoothed
            self.base = self.soft
        elif smoothing > 0:
            self.base = LabelSmoothingCrossEntropy(smoothing=smoothing)
        else:
            self.base = nn.CrossEntropyLoss()

    def mixtoken_target(self, target: torch.Tensor, box, input_hw) -> torch.Tensor:
        """Class target of a MixToken batch: ``lam * y + (1 - lam) * y.flip(0)``, lam = 1 - box area share.

        The box is in stage-1 token units (stride 4 of the input)."""
        y1, x1, y2, x2 = (int(v) for v in box)
        h, w = input_hw[0] // 4, input_hw[1] // 4
        lam = 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)
        if target.ndim == 1:
            return mixup_target(target, self.num_classes, lam=lam, smoothing=self.smoothing)
        return target * lam + target.flip(0) * (1.0 - lam)

    def token_label_loss(self, output, target: Dict[str, torch.Tensor], input_hw) -> torch.Tensor:
        """Official TokenLabelCrossEntropy (cls_weight 1): the model has already undone MixToken on its per-token
        logits, so the token targets stay per image; the class target is mixed by the stage-4 box area."""
        if not isinstance(output, (tuple, list)) or len(output) != 3:
            raise TypeError("token-label targets need a token-labelling model in training mode (logits, aux, box)")
        logits, aux, box = output
        hw = (int(input_hw[0]) // 32, int(input_hw[1]) // 32)  # stage-4 grid
        assert hw[0] * hw[1] == aux.shape[1], (hw, aux.shape)
        cls_t, tok_t = token_label_targets(target, self.num_classes, hw, self.smoothing)
        if box is not None:
            lam = mixtoken_lam([int(v) // 8 for v in box], aux.shape[1])
            if lam < 1:
                cls_t = lam * cls_t + (1.0 - lam) * cls_t.flip(0)
        return soft_ce(logits, cls_t) + self.dense_weight * soft_ce(aux.flatten(0, 1), tok_t.flatten(0, 1))

    def forward(self, output, target: torch.Tensor, input_hw: Sequence[int] = (0, 0)) -> torch.Tensor:
        if isinstance(target, dict):
            return self.token_label_loss(output, target, input_hw)
        if isinstance(output, torch.Tensor):
            return self.base(output, target)
        if len(output) == 2:  # light models: pooled head + class-token head, averaged (official recipe)
            return 0.5 * self.base(output[0], target) + 0.5 * self.base(output[1], target)
        if len(output) == 3:  # token labelling, trained on the class logits only (no token-label maps)
            logits, _aux, box = output
            if box is None:
                return self.base(logits, target)
            return self.soft(logits, self.mixtoken_target(target, box, input_hw))
        raise TypeError(f"unexpected model output: tuple of {len(output)}")


def build_loss(cfg: Dict[str, Any], num_classes: int) -> TrainLoss:
    tl = cfg.get("token_label") or {}
    return TrainLoss(num_classes, float(cfg["smoothing"]), soft_targets=mixup_active(cfg),
                     dense_weight=float(tl.get("dense_weight", 1.0)))


# --- the task -----------------------------------------------------------------------------------------------
class ClassificationTask(Task):
    """One label per sample, a linear classifier ``head``; top-1 / top-5 / loss and per-class accuracy."""

    metrics = ("top1", "top5", "loss")

    def build_model(self, cfg, num_classes):
        return build_model(cfg, num_classes)

    def create_model(self, name, num_classes, model_kwargs):
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **model_kwargs)

    def build_loss(self, cfg, num_classes):
        return build_loss(cfg, num_classes)

    def build_mixup(self, cfg, num_classes):
        return build_mixup(cfg, num_classes)

    def num_outputs(self, state_dict, checkpoint):
        if "head.weight" not in state_dict:
            raise ConfigError(f"{checkpoint}: no classifier (head.weight) in the checkpoint; is it a backbone-only "
                              "file?")
        return int(state_dict["head.weight"].shape[0])

    def meter(self, num_classes, dataset=None):
        return AccuracyCounter(num_classes)

    def chance_level(self, num_classes):
        return 100.0 / num_classes

    def has_unused_parameters(self, model):
        return has_token_labelling(model)  # token labelling: not every output reaches the loss in every step

    def train_loss(self, net, inputs, targets, loss_fn, mixup_fn):
        if inputs.dim() == 6:  # video repeated augmentation (B, N, C, T, H, W): N clips per video in the batch
            n = inputs.shape[1]
            inputs, targets = inputs.flatten(0, 1), targets.repeat_interleave(n)
        if mixup_fn is not None:
            inputs, targets = mixup_fn(inputs, targets)
        # the input size: MixToken's box is in stage-1 token units
        return loss_fn(net(inputs), targets, inputs.shape[-2:]), int(inputs.shape[0])

    def predict(self, model, inputs):
        if inputs.dim() != 6:
            return model(inputs)
        views = inputs.shape[1]  # video test: (B, V, C, T, H, W), every published view of each video
        logits = model(inputs.flatten(0, 1))
        # official TestMeter: sum of the views' raw logits (here the mean: same ranking)
        return logits.float().view(-1, views, logits.shape[-1]).mean(1)

    def result_files(self, meter, classes):
        return {"per_class.csv": meter.per_class_csv(classes)}
