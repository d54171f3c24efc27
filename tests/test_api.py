"""The public API: every exported name resolves to the object its module defines, lazily."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import stresslab
from stresslab.registry import Registry

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_every_exported_name_is_the_defining_modules_object() -> None:
    assert set(stresslab.__all__) == {*stresslab._EXPORTS, "__version__"}
    for name, module in stresslab._EXPORTS.items():
        value = getattr(stresslab, name)
        if name == "ATTRIBUTIONS":
            mod = importlib.import_module(module)
            assert value is (getattr(mod, "ATTRIBUTIONS", None) or mod.ATTRIBUTIONS)
        else:
            assert value is getattr(importlib.import_module(module), name), name
    registries = ["DATASETS", "MODELS", "PROBES", "ATTRIBUTIONS", "ATTACKS", "CORRUPTIONS"]
    for name in registries:
        assert isinstance(getattr(stresslab, name), Registry) and getattr(stresslab, name).names(), name
    assert "gradcam" in stresslab.ATTRIBUTIONS.names() and "evaluation" in stresslab.PROBES.names()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        stresslab.nope  # noqa: B018


def test_importing_stresslab_is_cheap() -> None:
    code = "import sys, stresslab; print('torch' in sys.modules, stresslab.__version__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": SRC}
    )
    assert out.stdout.split() == ["False", stresslab.__version__]
