"""The output folder of a synthetic-data writer: when it may be (re)written, and its manifest hash.

A writer owns its folder through a marker file written before any data (``.uniformer-synthetic``) and the
``manifest.json`` written last. The marker is what lets a set be rewritten after its manifest is gone:
Snakemake deletes a rule's declared output (the manifest) before re-running it, and a killed write leaves no
manifest behind. A folder with neither marker nor one of our manifests is the user's and is never touched.
The same two files tell a result where its data came from (``data_source``).
"""
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional

MARKER = ".uniformer-synthetic"
MANIFEST = "manifest.json"


def manifest_sha256(manifest: dict) -> str:
    """sha256 of the manifest's content without its own ``sha256`` key (canonical JSON)."""
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _our_manifest(out: Path) -> Optional[dict]:
    """The manifest in ``out`` if one of our generators wrote it, else None."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
        generator = manifest.get("generator", "")
    except (OSError, ValueError, AttributeError):
        return None
    return manifest if str(generator).startswith("uniformer.data.synth") else None


def is_ours(out: Path) -> bool:
    """True if ``out`` holds our marker or a manifest written by one of our generators."""
    return (out / MARKER).is_file() or _our_manifest(out) is not None


def data_source(root: os.PathLike) -> str:
    """Where the data set in ``root`` comes from, read from its files (not from a profile's name):
    ``"synthetic (<dataset>, seed <seed>)"`` (e.g. ``synthetic (kinetics-synthetic, seed 0)``) if one of our
    writers made it, ``"synthetic (<writer module>, unfinished)"`` if only its marker is there yet, else
    ``"real"``. Only ``root`` itself is looked at, as the writers put both files there."""
    root = Path(root)
    manifest = _our_manifest(root)
    if manifest is not None:
        return f"synthetic ({manifest.get('dataset')}, seed {manifest.get('params', {}).get('seed')})"
    if (root / MARKER).is_file():
        return f"synthetic ({(root / MARKER).read_text().strip()}, unfinished)"
    return "real"


def prepare_out(out: Path, generator: str) -> None:
    """Empty ``out`` for a (re)write if it is ours (or empty / missing), then mark it; raise
    ``FileExistsError`` naming the folder if it holds anything else."""
    if out.exists() and any(out.iterdir()):
        if not is_ours(out):
            raise FileExistsError(f"{out}: not empty and not a synthetic set written here (no {MARKER} or "
                                  f"{MANIFEST} from uniformer); delete it or pick another --out")
        (out / MANIFEST).unlink(missing_ok=True)  # first, so an interrupted rewrite leaves no manifest behind
        for child in out.iterdir():
            if child.name != MARKER:
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(f"{generator}\n")
