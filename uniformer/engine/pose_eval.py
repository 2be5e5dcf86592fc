"""COCO keypoint evaluation: every person box through the published top-down test, then rescoring, per-image
OKS-NMS and keypoint AP."""
import os
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..data.coco_pose import DET_FILE, ann_file, load_instances
from ..data.images import open_image
from .pose_metrics import keypoint_ap
from .pose_protocol import (PIXEL_STD, crop_matrix, decode, flip_test, normalize_crop, oks_nms, rescore,
                            warp_crop)


@torch.no_grad()
def predict_keypoints(model, root: os.PathLike, image_size: Tuple[int, int], split: str = "val",
                      det_file: Optional[str] = DET_FILE, flip: bool = True, oks_thr: float = 0.9) -> List[Dict]:
    """COCO keypoint results [{image_id, category_id, keypoints, score}] after rescoring and OKS-NMS."""
    model.eval()
    per_image = defaultdict(list)
    for inst in load_instances(root, split, image_size, det_file):
        crop = warp_crop(np.array(open_image(inst.image)), crop_matrix(inst.center, inst.scale, image_size), image_size)
        x = normalize_crop(crop)[None]
        heatmaps = (flip_test(model, x) if flip else model(x)).numpy()
        kp, scores = decode(heatmaps, inst.center[None], inst.scale[None])
        per_image[inst.image_id].append((np.concatenate([kp[0], scores[0]], -1), rescore(inst.score, scores[0, :, 0]),
                                         float(np.prod(inst.scale * PIXEL_STD))))
    results = []
    for image_id, found in per_image.items():
        kps = np.stack([f[0] for f in found])
        for i in oks_nms(kps, np.array([f[1] for f in found]), np.array([f[2] for f in found]), oks_thr):
            results.append({"image_id": image_id, "category_id": 1, "keypoints": kps[i].ravel().tolist(),
                            "score": found[i][1]})
    return results


def evaluate_coco_pose(model, root: os.PathLike, image_size: Tuple[int, int], split: str = "val",
                       det_file: Optional[str] = DET_FILE, flip: bool = True) -> Dict[str, float]:
    """Keypoint AP / AP50 / ... of ``model`` on a split (published: detected boxes, flip test)."""
    return keypoint_ap(ann_file(root, split), predict_keypoints(model, root, image_size, split, det_file, flip))
