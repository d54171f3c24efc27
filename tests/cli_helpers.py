"""Shared pieces of the tests that drive whole runs: fast settings, CLI calls, registries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from typer.testing import CliRunner, Result

from stresslab.cli import app

# A run on the 1,200-image Fashion-MNIST fixture that trains in a few seconds on 2 cores.
FAST = [
    "--set",
    "data.train_subset=600",
    "--set",
    "data.test_subset=300",
    "--set",
    "train.epochs=2",
    "--set",
    "train.batch_size=64",
    "--set",
    "model.args={widths: [8, 16], fc: 32}",
]


def invoke(args: list[str]) -> Result:
    """``stresslab ARGS`` in this process; stdout and stderr together in ``.output``."""
    return CliRunner().invoke(app, args, catch_exceptions=False)


def run_ok(args: list[str]) -> str:
    """``stresslab ARGS``, which must exit 0; returns its output."""
    res = invoke(args)
    assert res.exit_code == 0, res.output
    return res.output


def _all_registries() -> list[Any]:
    from stresslab.attacks import ATTACKS
    from stresslab.attributions import ATTRIBUTIONS
    from stresslab.corruptions import CORRUPTIONS
    from stresslab.data import DATASETS
    from stresslab.models import MODELS
    from stresslab.probes import PROBES

    return [DATASETS, MODELS, PROBES, ATTACKS, CORRUPTIONS, ATTRIBUTIONS]


@contextmanager
def registries_restored() -> Iterator[None]:
    """Whatever a test registers (a probe, a model, ...) is gone again afterwards, so tests
    that walk a registry (every probe runs, every model builds) see only the built-ins."""
    saved = [(reg, dict(reg._items)) for reg in _all_registries()]
    try:
        yield
    finally:
        for reg, items in saved:
            reg._items.clear()
            reg._items.update(items)
