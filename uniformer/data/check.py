"""Validate an ImageNet-layout data set before spending GPU hours on it.

Finds: a missing split folder, files lying outside class folders, empty class folders, class folders
present in only one split, files with a non-image extension, and images that cannot be fully decoded
(unreadable or truncated; see ``images.open_image``). Every problem names its path.
"""
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .images import BadImageError, has_image_extension, open_image

SPLITS = ("train", "val")
EXPECTED = "ROOT/{split}/<wnid>/*.JPEG"
ALLOWED = ".JPEG/.jpg/.jpeg/.png"


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str  # a short key, counted in the summary
    message: str

    def __str__(self):
        return f"{self.path}: {self.message}"


class Findings:
    """What every checker's report answers: ``problems`` (``Problem``), ``ok``, ``add`` and a one-line summary
    (``_summary``) that counts the problems by kind. Subclasses are dataclasses with ``root`` and ``problems``."""
    root: str
    problems: list

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path, kind: str, message: str) -> None:
        self.problems.append(Problem(os.fspath(path), kind, message))

    def _summary(self, sizes: str, name: str = "") -> str:
        """``<root>: [<name>] OK (<sizes>)`` or ``<root>: [<name>:] N problem(s) (<count> <kind>, ...) (<sizes>)``."""
        if self.ok:
            return f"{self.root}: {name + ' ' if name else ''}OK ({sizes})"
        counts = Counter(p.kind for p in self.problems)
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        return f"{self.root}: {name + ': ' if name else ''}{len(self.problems)} problem(s) ({detail}) ({sizes})"


@dataclass
class Report(Findings):
    root: str
    problems: list = field(default_factory=list)
    classes: dict = field(default_factory=dict)  # split -> number of class folders
    images: dict = field(default_factory=dict)  # split -> number of image files (good or bad)

    def summary(self) -> str:
        return self._summary(", ".join(f"{s}: {self.classes.get(s, 0)} classes / {self.images.get(s, 0)} images"
                                       for s in SPLITS))


def _decode_error(path: str):
    """None if ``path`` decodes fully, else the problem message (module-level so worker processes can run it)."""
    try:
        open_image(path)
    except BadImageError as e:
        return str(e).removeprefix(f"{path}: ")
    return None


def check_imagenet(root: os.PathLike, workers: int = 0) -> Report:
    """Check ``root`` against the ImageNet layout; decode every image (in ``workers`` processes if > 0)."""
    root = Path(root)
    report = Report(os.fspath(root))
    if not root.is_dir():
        report.add(root, "missing root", f"no such folder; expected {EXPECTED.format(split='train')}")
        return report
    class_sets, images = {}, []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            report.add(split_dir, "missing split", f"missing split folder; expected {EXPECTED.format(split=split)}")
            continue
        entries = sorted(os.scandir(split_dir), key=lambda e: e.name)
        loose = [e for e in entries if not e.is_dir()]
        if loose:
            report.add(split_dir, "loose files",
                       f"{len(loose)} file(s) directly in the split folder (e.g. {loose[0].name}), which no class "
                       f"owns; move them into {split}/<wnid>/ (the raw ILSVRC val set needs this) or delete them")
        class_sets[split] = {e.name for e in entries if e.is_dir()}
        report.classes[split] = len(class_sets[split])
        report.images[split] = 0
        for wnid in sorted(class_sets[split]):
            n_images = 0
            # Recursive, like torchvision's make_dataset, which also picks up images in sub-folders.
            for dirpath, dirnames, filenames in os.walk(split_dir / wnid):
                dirnames.sort()
                for name in sorted(filenames):
                    path = os.path.join(dirpath, name)
                    if has_image_extension(name):
                        images.append(path)
                        n_images += 1
                    else:
                        report.add(path, "wrong extension", f"not an image file name (allowed: {ALLOWED}); "
                                                            f"remove it or move it out of the data set")
            report.images[split] += n_images
            if n_images == 0:
                report.add(split_dir / wnid, "empty class",
                           f"empty class folder (no {ALLOWED} files); add its images or remove the folder")
    if len(class_sets) == len(SPLITS):
        for split, other in (("train", "val"), ("val", "train")):
            for wnid in sorted(class_sets[other] - class_sets[split]):
                report.add(root / split / wnid, "class mismatch",
                           f"class folder missing (present in {other}/); labels from sorted wnids would "
                           f"differ between the splits")
    if workers > 0:
        with ProcessPoolExecutor(workers) as pool:
            errors = list(pool.map(_decode_error, images, chunksize=64))
    else:
        errors = [_decode_error(p) for p in images]
    for path, error in zip(images, errors):
        if error is not None:
            report.add(path, "bad image", f"{error}; re-extract or re-download it, or delete it")
    return report
