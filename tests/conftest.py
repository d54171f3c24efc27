"""Shared fixtures: tiny data and models so every test runs in seconds on 2 cores."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
import torch
from torch import nn

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))

from stresslab.data.base import DatasetInfo, Split  # noqa: E402
from stresslab.models.base import Classifier  # noqa: E402

_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process with the session's exit status once pytest has written everything.

    The interpreter's own teardown of the native libraries a full run loads (torch's and
    OpenMP's thread pools, Ray's client, the memory-mapped caches) has crashed with a
    segmentation fault after every test had passed and the summary was written, turning a
    green run red. Nothing is left to do after the last hook, so the process exits here.
    """
    if not _EXIT_STATUS:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])


class TinyNet(Classifier):
    """Conv(4) -> ReLU -> pool -> linear: a model small enough to train in a second."""

    cam_layer = "body.0"

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info.mean, info.std)
        self.body = nn.Sequential(
            nn.Conv2d(info.channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2)
        )
        self.head = nn.Linear(16, info.num_classes)


def make_split(
    n_train: int = 96,
    n_val: int = 32,
    n_test: int = 64,
    channels: int = 1,
    size: int = 8,
    classes: int = 3,
    seed: int = 0,
    class_names: tuple[str, ...] | None = None,
) -> Split:
    """A learnable synthetic split: class k has a bright square at a class-specific place."""
    g = torch.Generator().manual_seed(seed)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        x = (torch.rand(n, channels, size, size, generator=g) * 60).to(torch.uint8)
        for k in range(classes):
            r = (k * 2) % (size - 2)
            x[y == k, :, r : r + 3, r : r + 3] = 220
        return x, y

    names = class_names or tuple(f"class{k}" for k in range(classes))
    info = DatasetInfo(
        "synthetic", names, channels, size, size, (0.3,) * channels, (0.3,) * channels, background=None
    )
    tx, ty = draw(n_train)
    vx, vy = draw(n_val)
    sx, sy = draw(n_test)
    return Split(info, tx, ty, vx, vy, sx, sy)


@pytest.fixture
def split() -> Split:
    return make_split()


@pytest.fixture
def tiny_model(split: Split) -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(split.info)


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small Fashion-MNIST root in the real IDX .gz format (1200 train, 400 test images)."""
    from tests.data_factories import write_fashion_mnist

    root = tmp_path_factory.mktemp("fmnist")
    write_fashion_mnist(root, n_train=1200, n_test=400, seed=0)
    return str(root)


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    """Probes return open matplotlib figures; tests that do not save them close them here."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
