"""The ImageNet on-disk format, its dataset and its loader.

Layout (the standard one, after the val images are moved into class folders)::

    ROOT/train/<wnid>/*.JPEG
    ROOT/val/<wnid>/*.JPEG
    ROOT/manifest.json          optional; written by ``synth_imagenet``, read by ``dataset_manifest_hash``

Label = position of the wnid in the sorted wnid list, unless a class-index file fixes the order.

Bad images (unreadable, truncated) do not stop an epoch: the dataset returns the next readable sample
instead and flags the substitution, and ``build_loader`` yields ``(images, targets, n_skipped)`` so the
training loop can count skipped samples across DataLoader worker processes (``build_loader`` lives in
``loader.py``, shared with the video data sets, and is re-exported here)::

    loader = build_loader(ImageNetFolder(root, "train", transform), 256, True, 8, seed=0)
    for images, targets, n_skipped in loader:
        ...
"""
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from torchvision.datasets import DatasetFolder

from .images import IMAGE_EXTENSIONS, BadImageError, open_image
from .loader import _Checked, build_loader, collate_checked  # noqa: F401  (re-exported: the shared loader)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LAYOUT = "ROOT/{split}/<wnid>/*.JPEG"

ClassIndex = Union[str, os.PathLike, Sequence[str]]


def load_class_index(path: os.PathLike) -> list:
    """Read a class-index file and return the wnids in label order (label = list position).

    Accepted formats:
      * text, one wnid per line (label = line number); anything after the wnid that is not an integer is a
        name and is ignored, so ``LOC_synset_mapping.txt`` ("n01440764 tench, Tinca tinca") works too;
      * text, ``wnid<TAB>index`` per line;
      * JSON ``{"0": ["n01440764", "tench"], ...}`` (the common ``imagenet_class_index.json``).
    """
    path = Path(path)
    text = path.read_text()
    fix = "expected one wnid per line, 'wnid<TAB>index' lines, or JSON {index: [wnid, name]}"
    pairs = []  # (index, wnid)
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            pairs = [(int(k), v[0] if isinstance(v, list) else v) for k, v in json.loads(text).items()]
        except (ValueError, TypeError, IndexError) as e:
            raise ValueError(f"{path}: bad class-index JSON ({e}); {fix}") from None
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        explicit = []
        for n, line in enumerate(lines):
            wnid, _, rest = line.partition("\t") if "\t" in line else line.partition(" ")
            rest = rest.strip()
            explicit.append(rest.isdigit())
            pairs.append((int(rest) if rest.isdigit() else n, wnid.strip()))
        if any(explicit) and not all(explicit):
            raise ValueError(f"{path}: some lines have an index and some do not; {fix}")
    pairs.sort()
    indices, wnids = [i for i, _ in pairs], [w for _, w in pairs]
    if indices != list(range(len(pairs))):
        raise ValueError(f"{path}: class indices must be 0..{len(pairs) - 1}, each once; {fix}")
    duplicates = sorted({w for w in wnids if wnids.count(w) > 1})
    if duplicates:
        raise ValueError(f"{path}: wnid listed more than once: {', '.join(duplicates)}")
    if not wnids:
        raise ValueError(f"{path}: empty class index; {fix}")
    return wnids


class ImageNetFolder(DatasetFolder):
    """``ROOT/<split>/<wnid>/*.JPEG`` as a dataset of ``(image, label)``; bad images are skipped, not raised.

    ``class_index``: a class-index file (see ``load_class_index``) or a list of wnids (e.g. ``train.classes``,
    so val gets train's labels) that fixes the label order. Every class folder must then be in it; wnids in
    it without a folder keep their label and just have no samples.

    A bad image is logged once per process (``logging.warning``), recorded in ``bad_files`` (this process
    only) and replaced by the next readable sample in index order, so a given epoch is reproducible.
    """

    def __init__(self, root: os.PathLike, split: str, transform: Optional[Callable] = None,
                 class_index: Optional[ClassIndex] = None, target_transform: Optional[Callable] = None):
        self.dataset_root = Path(root)
        self.split = split
        split_dir = self.dataset_root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir}: missing split folder; expected {LAYOUT.format(split=split)}")
        if class_index is None or isinstance(class_index, (str, os.PathLike)):
            self._index = load_class_index(class_index) if class_index is not None else None
        else:
            self._index = list(class_index)
        try:
            # With a fixed class index, a wnid without images is allowed (its label simply has no samples).
            super().__init__(split_dir, loader=open_image, extensions=IMAGE_EXTENSIONS, transform=transform,
                             target_transform=target_transform, allow_empty=self._index is not None)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{split_dir}: {e} Run `uniformer data check imagenet --root {root}` "
                                    f"for a full report.") from None
        if not self.samples:
            raise FileNotFoundError(f"{split_dir}: no images; expected {LAYOUT.format(split=split)}")
        self.bad_files = []
        self._bad = set()

    def find_classes(self, directory):
        folders = sorted(e.name for e in os.scandir(directory) if e.is_dir())
        if self._index is None:
            if not folders:
                raise FileNotFoundError(f"no class folders; expected {LAYOUT.format(split=self.split)}")
            classes = folders
        else:
            unknown = sorted(set(folders) - set(self._index))
            if unknown:
                raise FileNotFoundError(
                    f"class folder(s) not in the class index: {', '.join(unknown[:5])}"
                    f"{' ...' if len(unknown) > 5 else ''} ({len(unknown)}); add them to the index or remove them.")
            classes = self._index
        return classes, {wnid: i for i, wnid in enumerate(classes)}

    def get_checked(self, index: int):
        """``(sample, target, ok)``: ``ok`` is False when the file at ``index`` was bad and the next readable
        sample (wrapping around) was returned in its place."""
        n = len(self.samples)
        for step in range(n):
            path, target = self.samples[(index + step) % n]
            if path in self._bad:
                continue
            try:
                sample = self.loader(path)
            except BadImageError as e:
                self._bad.add(path)
                self.bad_files.append(path)
                log.warning("skipping bad image %s", e)
                continue
            if self.transform is not None:
                sample = self.transform(sample)
            if self.target_transform is not None:
                target = self.target_transform(target)
            return sample, target, step == 0
        raise RuntimeError(f"{self.root}: none of the {n} images is readable; "
                           f"run `uniformer data check imagenet --root {self.dataset_root}`")

    def __getitem__(self, index: int):
        sample, target, _ = self.get_checked(index)
        return sample, target


def dataset_manifest_hash(root: os.PathLike) -> str:
    """A hash that changes when the data set changes: the ``sha256`` of ``ROOT/manifest.json`` if present,
    else a sha256 over every file's relative path and size (cheap; content edits of equal size go unseen)."""
    root = Path(root)
    manifest = root / MANIFEST
    if manifest.is_file():
        digest = json.loads(manifest.read_text()).get("sha256")
        return digest or hashlib.sha256(manifest.read_bytes()).hexdigest()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such data set folder; expected {LAYOUT.format(split='train')}")
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            h.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n".encode())
    return h.hexdigest()
