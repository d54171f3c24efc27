"""Atomic writes and strict readers: a kill at any moment leaves the old or the new file, complete."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from stresslab.errors import ConfigError, StresslabError

log = logging.getLogger(__name__)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, then rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 text, atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def finite_json(obj: Any) -> Any:
    """Replace NaN/Inf floats (also inside containers and tensors) by ``None`` for strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return finite_json(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return finite_json(obj.item())
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Strict JSON (no NaN or Infinity), atomically."""
    atomic_write_text(path, json.dumps(finite_json(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StresslabError(f"missing file: {p}") from None
    except json.JSONDecodeError as e:
        raise StresslabError(f"{p}: not valid JSON: {e}") from None


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML mapping from ``path`` (an empty file is ``{}``); errors name the file.

    Raises ConfigError when the file is missing (``what`` names it: "config file", "study
    file"), is not valid YAML, or holds something other than a mapping at the top level.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data
