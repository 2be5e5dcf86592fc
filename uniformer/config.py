"""params.yaml: loading, profile selection, command-line overrides and hashing.

Layout: ``<section>: {<profile>: {...}}`` or, for per-table sections, ``<section>: {<table>: {<profile>: {...}}}``;
``settings`` names the active profile (``smoke`` by default, ``paper`` for the published recipes).
"""
import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A bad params file or override; the message names the file/key and the fix."""


def params_path() -> Path:
    """``$UNIFORMER_PARAMS`` or ``params.yaml`` in the current directory, else the project's own."""
    env = os.environ.get("UNIFORMER_PARAMS")
    if env:
        return Path(env)
    cwd = Path.cwd() / "params.yaml"
    return cwd if cwd.is_file() else PROJECT_ROOT / "params.yaml"


def load_params(path: Optional[os.PathLike] = None) -> Dict[str, Any]:
    path = Path(path) if path else params_path()
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found. Run from the project root or set UNIFORMER_PARAMS.")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}). Fix the syntax at the reported line.") from e
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return params


def active_profile(params: Dict[str, Any], profile: Optional[str] = None) -> str:
    return (profile or os.environ.get("UNIFORMER_SETTINGS") or os.environ.get("UNIFORMER_PROFILE")
            or params.get("settings", "smoke"))


def add_settings_argument(p) -> None:
    """``--settings smoke|paper`` (``--profile``: its old name), read by ``active_profile``."""
    p.add_argument("--settings", "--profile", dest="profile", help="smoke | paper: the settings of params.yaml "
                   "(default: its `settings` key or $UNIFORMER_SETTINGS; --profile is the old name)")


def section(params: Dict[str, Any], name: str, profile: str, table: Optional[str] = None) -> Dict[str, Any]:
    """The resolved ``params[name][table][profile]`` (or ``params[name][profile]``) as a fresh dict."""
    node = params.get(name)
    where = name
    if node is None:
        raise ConfigError(f"params.yaml has no '{name}' section")
    if table is not None:
        if table not in node:
            raise ConfigError(f"params.yaml: '{name}' has no table '{table}' (has: {sorted(node)})")
        node, where = node[table], f"{name}.{table}"
    if profile not in node:
        raise ConfigError(f"params.yaml: '{where}' has no profile '{profile}' (has: {sorted(node)})")
    return copy.deepcopy(node[profile])


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML); unknown keys are an error, not a silent no-op."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. epochs=3)")
        key, value = item.split("=", 1)
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"override '{item}': '{p}' is not a section (known: {sorted(node)})")
            node = node[p]
        if parts[-1] not in node:
            raise ConfigError(f"override '{item}': unknown key '{key}' (known: {sorted(node)})")
        node[parts[-1]] = _parse_value(value)
    return cfg


def config_hash(cfg: Any) -> str:
    """Stable short hash of a resolved config (sorted JSON)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


# The parts of the package whose code decides what a training run computes (DVC's train stages depend on the same).
TRAINING_CODE = ("engine", "models", "data", "tasks")


def code_fingerprint(parts: Iterable[str] = TRAINING_CODE) -> str:
    """Short hash of the package's source under ``parts`` (file names and bytes), to tell which code made a result."""
    h = hashlib.sha256()
    pkg = PROJECT_ROOT / "uniformer"
    for part in parts:
        for path in sorted((pkg / part).rglob("*.py")):
            h.update(path.relative_to(pkg).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]
