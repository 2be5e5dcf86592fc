"""Data-loader throughput: images/s decoded and augmented with the training transform.

    loader_throughput(root, img_size=224, batch_size=128, num_workers=8, max_batches=50) -> dict
    loader_sweep(root, img_size, batch_size, workers=(0, 2, 4, 8), max_batches=50) -> [dict, ...]

The transform is the training one of a recipe (``train.<table>.<profile>`` of params.yaml, or the
published DeiT recipe by default: RandomResizedCrop, flip, RandAugment rand-m9-mstd0.5-inc1, colour jitter,
random erasing 0.25), built with timm's ``create_transform``; the loader is the one training uses
(``uniformer.data.imagenet.build_loader``, shuffled, drop_last). The first batch (worker start-up) is
timed separately; ``img_per_s`` is the steady state after it.
"""
import time
from typing import Any, Dict, Iterable, List, Optional

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform

from ..data.imagenet import ImageNetFolder
from ..data.loader import build_loader
from ..data.timm_fixes import patch_timm_posterize

# The published DeiT-style training augmentation (params.yaml train.imagenet.paper).
PAPER_AUGMENT = dict(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, color_jitter=0.4,
                     aa="rand-m9-mstd0.5-inc1", train_interpolation="bicubic", reprob=0.25, remode="pixel",
                     recount=1)


def training_transform(img_size: int, recipe: Optional[Dict[str, Any]] = None):
    """timm ``create_transform(is_training=True)`` with the recipe's augmentation (default: ``PAPER_AUGMENT``)."""
    patch_timm_posterize()
    r = {**PAPER_AUGMENT, **(recipe or {})}
    return create_transform(
        input_size=int(img_size), is_training=True, scale=tuple(r["scale"]), ratio=tuple(r["ratio"]),
        hflip=float(r["hflip"]), color_jitter=r["color_jitter"] or None, auto_augment=r["aa"] or None,
        interpolation=r["train_interpolation"], mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        re_prob=float(r["reprob"]), re_mode=r["remode"], re_count=int(r["recount"]))


def loader_throughput(root, img_size: int = 224, batch_size: int = 128, num_workers: int = 8,
                      max_batches: int = 50, recipe: Optional[Dict[str, Any]] = None, split: str = "train",
                      seed: int = 0) -> Dict[str, Any]:
    """Time ``max_batches`` batches (fewer if the split is smaller) of the training loader over ``root/split``."""
    dataset = ImageNetFolder(root, split, transform=training_transform(img_size, recipe))
    loader = build_loader(dataset, int(batch_size), shuffle=True, num_workers=int(num_workers), seed=seed,
                          drop_last=len(dataset) >= batch_size, pin_memory=False)
    images = batches = skipped = 0
    first_batch_s = None
    t0 = time.perf_counter()
    t_steady = t0
    it = iter(loader)
    try:
        for x, _y, n_skipped in it:
            if first_batch_s is None:
                first_batch_s = time.perf_counter() - t0
                t_steady = time.perf_counter()
            else:
                images += int(x.shape[0])
            batches += 1
            skipped += int(n_skipped)
            if batches >= max_batches:
                break
    finally:
        del it, loader  # stop the workers
    steady_s = time.perf_counter() - t_steady
    return {
        "root": str(root), "split": split, "img_size": int(img_size), "batch_size": int(batch_size),
        "num_workers": int(num_workers), "batches": batches, "images_timed": images,
        "first_batch_s": first_batch_s, "seconds": steady_s,
        "img_per_s": images / steady_s if images and steady_s > 0 else None,
        "skipped_samples": skipped, "dataset_size": len(dataset),
    }


def loader_sweep(root, img_size: int = 224, batch_size: int = 128, workers: Iterable[int] = (0, 2, 4, 8),
                 max_batches: int = 50, recipe: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """``loader_throughput`` for each worker count (the num_workers sweep)."""
    return [loader_throughput(root, img_size, batch_size, w, max_batches, recipe) for w in workers]
