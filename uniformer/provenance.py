"""Which code and parameters made a result file, so that a stale result is refused instead of trusted.

Every result file (train / eval metrics.json, the profile JSON) carries ``provenance``: a fingerprint of the
package code its stage runs and a hash of the params.yaml sections it read (plus any command-line overrides).
``uniformer check`` recomputes both for the checkout and refuses a file whose stamp differs.
"""
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .config import TRAINING_CODE, code_fingerprint, config_hash

# stage -> (package parts whose code decides its numbers, params sections it reads: per data set or global)
STAGES = {
    "train": (TRAINING_CODE, ("data", "train")),
    "eval": (TRAINING_CODE, ("data", "train", "eval")),  # the checkpoint came from the train section
    "profile": (("models", "profiling", "tasks"), ("profiling",)),
}


def _sections(stage: str, params: Dict[str, Any], settings: str, dataset: Optional[str]) -> List[Tuple[str, Any]]:
    out = []
    for name in STAGES[stage][1]:
        node = params.get(name, {})
        node = node.get(dataset, {}) if name != "profiling" else node
        out.append((name, node.get(settings)))
    return out


def stamp(stage: str, params: Dict[str, Any], settings: str, dataset: Optional[str] = None,
          overrides: Iterable[str] = ()) -> Dict[str, str]:
    """The provenance of a result ``stage`` writes now."""
    return {"stage": stage, "code": code_fingerprint(STAGES[stage][0]),
            "params": config_hash([_sections(stage, params, settings, dataset), sorted(overrides or ())])}


def stale_reason(recorded: Optional[Dict[str, str]], stage: str, params: Dict[str, Any], settings: str,
                 dataset: Optional[str] = None) -> Optional[str]:
    """None if ``recorded`` is what this checkout would write, else why not (for the gate's message)."""
    if not recorded:
        return "it records no provenance (written by an older version)"
    now = stamp(stage, params, settings, dataset)
    if recorded.get("code") != now["code"]:
        return f"made by other code ({recorded.get('code')}; the checkout's is {now['code']})"
    if recorded.get("params") != now["params"]:
        return f"made with other parameters ({recorded.get('params')}; params.yaml now gives {now['params']})"
    return None
