import json
import os
from pathlib import Path

import pytest
import torch

# Tests never log to the project's MLflow store unless they set their own MLFLOW_TRACKING_URI.
os.environ.setdefault("UNIFORMER_NO_MLFLOW", "1")

# `make test` runs pytest-xdist workers, one per core: each worker (and every command it starts) gets one
# intra-op thread, as two workers with two OpenMP threads each on 2 cores spin on each other's barriers (measured:
# 4x slower, see ``one_thread``).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

DATA = Path(__file__).parent / "data"


def load_manifest(stem: str) -> dict:
    return json.loads((DATA / "manifests" / f"{stem}.json").read_text())


def image_manifests():
    """Manifests of the image classifiers (plain, light, token-labelling)."""
    return sorted(p.stem for p in (DATA / "manifests").glob("*.json")
                  if not p.stem.startswith(("video_", "det_", "seg_", "pose_")))


def pytest_collection_modifyitems(config, items):
    """The long ``e2e`` files first (a stable sort): xdist hands out whole files in this order, so the two
    workers end together instead of one running the last long file alone."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for numerics tests: on the shared 2-core machine, 2 OpenMP threads wait on each other's
    barriers whenever another job holds a core (measured: S forward 1.2 s with 2 threads vs 0.3 s with 1)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def assert_matches_manifest(model, ref: dict) -> None:
    """``model``'s state dict has exactly the official keys and shapes, entry count and parameter count."""
    from uniformer.profiling.flops import count_params

    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) == set(ref["keys"]), (
        f"missing {sorted(set(ref['keys']) - set(ours))[:5]}, extra {sorted(set(ours) - set(ref['keys']))[:5]}")
    assert {k: s for k, s in ours.items() if ref["keys"][k] != s} == {}
    assert len(ours) == ref["num_state_dict_entries"]
    assert count_params(model) == ref["num_params"]


def decay_groups(cfg: dict, model, lr: float) -> dict:
    """``engine.recipe.build_optimizer``'s parameter groups by name: {weight_decay: set of parameter names}."""
    from uniformer.engine.recipe import build_optimizer

    names = {id(p): n for n, p in model.named_parameters()}
    return {g["weight_decay"]: {names[id(p)] for p in g["params"]}
            for g in build_optimizer(cfg, model, lr).param_groups}
