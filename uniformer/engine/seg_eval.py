"""ADE20K evaluation: every image of a split through the published protocol, metrics at original resolution."""
import os
from typing import Dict, Optional, Sequence, Tuple

import torch

from ..data.ade20k import ADE20K
from .seg_metrics import ConfusionMatrix
from .seg_protocol import IMG_SCALE, predict


@torch.no_grad()
def evaluate_ade20k(model, root: os.PathLike, split: str = "val", ratios: Sequence[float] = (1.0,),
                    flip: bool = False, align: bool = False, img_scale: Tuple[int, int] = IMG_SCALE,
                    limit: Optional[int] = None) -> Dict[str, float]:
    """aAcc / mIoU / mAcc (percent) and the image count. Published: UperNet single scale ``ratios=(1.0,)`` and
    MS ``ratios=MS_RATIOS, flip=True``; Semantic FPN ``align=True``, single scale."""
    model.eval()
    data = ADE20K(root, split)
    cm = ConfusionMatrix()
    n = len(data) if limit is None else min(limit, len(data))
    for i in range(n):
        img, label = data[i]
        cm.add(predict(model, img, ratios, flip, align, img_scale), label)
    return {**cm.summary(), "images": n}
