"""The output folder of a synthetic-data writer: when it may be (re)written, and its manifest hash.

A writer owns its folder through a marker file written before any data (``.uniformer-synthetic``) and the
``manifest.json`` written last. The marker is what lets a set be rewritten after its manifest is gone:
Snakemake deletes a rule's declared output (the manifest) before re-running it, and a killed write leaves no
manifest behind. A folder with neither marker nor one of our manifests is the user's and is never touched.
"""
import hashlib
import json
import shutil
from pathlib import Path

MARKER = ".uniformer-synthetic"
MANIFEST = "manifest.json"


def manifest_sha256(manifest: dict) -> str:
    """sha256 of the manifest's content without its own ``sha256`` key (canonical JSON)."""
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def is_ours(out: Path) -> bool:
    """True if ``out`` holds our marker or a manifest written by one of our generators."""
    if (out / MARKER).is_file():
        return True
    try:
        generator = json.loads((out / MANIFEST).read_text()).get("generator", "")
    except (OSError, ValueError, AttributeError):
        return False
    return str(generator).startswith("uniformer.data.synth")


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
