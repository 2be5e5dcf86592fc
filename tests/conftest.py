import json
import os
from pathlib import Path

import pytest

# Tests never log to the project's MLflow store unless they set their own MLFLOW_TRACKING_URI.
os.environ.setdefault("UNIFORMER_NO_MLFLOW", "1")

DATA = Path(__file__).parent / "data"


def load_manifest(stem: str) -> dict:
    return json.loads((DATA / "manifests" / f"{stem}.json").read_text())


def image_manifests():
    """Manifests of the image classifiers (plain, light, token-labelling)."""
    return sorted(p.stem for p in (DATA / "manifests").glob("*.json")
                  if not p.stem.startswith(("video_", "det_", "seg_", "pose_")))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
