"""The skip-counting loader shared by every data set (images and videos).

A dataset may expose ``get_checked(index) -> (sample, target, ok)``: ``ok`` is False when the sample at
``index`` was unreadable and another one was returned in its place. ``build_loader`` wraps any dataset so
batches come out as ``(samples, targets, n_skipped)``; ``n_skipped`` is computed in the worker processes
and so reaches the training / evaluation loop with its batch::

    loader = build_loader(dataset, 32, shuffle=True, num_workers=8, seed=0)
    for samples, targets, n_skipped in loader:
        ...

Samples may be images ``(C, H, W)``, video clips ``(C, T, H, W)`` or all test views of a video
``(V, C, T, H, W)``: collation just stacks them.
"""
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate


class CheckedDataset(Dataset):
    """Adapts a dataset to yield ``(sample, target, ok)``; ``ok`` is always True if it has no ``get_checked``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        if hasattr(self.dataset, "get_checked"):
            return self.dataset.get_checked(index)
        sample, target = self.dataset[index]
        return sample, target, True


_Checked = CheckedDataset  # the name the engine modules import (via ``uniformer.data.imagenet``)


def stack(samples, targets):
    """The default batch: samples and targets stacked (``torch.utils.data.default_collate``)."""
    return default_collate(list(samples)), default_collate(list(targets))


class CollateChecked:
    """Collate ``(sample, target, ok)`` triples into ``(samples, targets, n_skipped)`` with ``collate(samples,
    targets)`` (a task's ``Task.collate``: stacking by default); runs in the workers, so the skip count reaches
    the main process with the batch."""

    def __init__(self, collate: Callable = stack):
        self.collate = collate

    def __call__(self, batch):
        samples, targets, oks = zip(*batch)
        return (*self.collate(samples, targets), sum(not ok for ok in oks))


collate_checked = CollateChecked()


def build_loader(dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int,
                 distributed: bool = False, drop_last: bool = False, *,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None,
                 pin_memory: Optional[bool] = None, collate: Callable = stack) -> DataLoader:
    """A DataLoader yielding ``(samples, targets, n_skipped)`` batches; the dataset must return tensors.

    Order is fixed by ``seed``: a seeded generator when not distributed (it also seeds the workers), else a
    ``DistributedSampler(seed=seed)`` over the process group (or ``num_replicas``/``rank``). When distributed,
    call ``loader.sampler.set_epoch(epoch)`` each epoch, as with any DistributedSampler. The loader wraps the
    dataset: the original is ``loader.dataset.dataset``. ``collate(samples, targets)`` makes a batch
    (``Task.collate``; default: stacked).
    """
    checked = CheckedDataset(dataset)
    sampler = None
    if distributed:  # pads with repeats so every rank gets as many samples (drop_last applies to batches)
        sampler = DistributedSampler(checked, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
    return DataLoader(
        checked, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
        num_workers=num_workers, collate_fn=CollateChecked(collate), drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        # Workers that live across epochs log each bad file once per run, not once per epoch.
        persistent_workers=num_workers > 0,
    )
