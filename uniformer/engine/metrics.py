"""Classification metrics as additive counts (so they sum exactly over batches and processes).

``topk_correct`` matches torchmetrics' ``MulticlassAccuracy(top_k=k, average="micro")`` (tested);
k larger than the number of classes is clamped to it.
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F


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
