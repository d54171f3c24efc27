"""The probe contract: settings in ``__init__``, data in ``run(ctx)``, data out.

A probe never writes HTML or files. It returns a :class:`ProbeResult`; the runner saves
its JSON and figures under ``RUN_DIR/results/`` and the report is rebuilt from those.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from stresslab.data.base import DatasetInfo, Split
from stresslab.data.sampling import stratified_sample
from stresslab.devices import forward_batch
from stresslab.errors import ConfigError
from stresslab.registry import Registry
from stresslab.shards import LocalShards, ShardExecutor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from stresslab.probes.predictions import Predictions
    from stresslab.train.config import TrainConfig


@dataclass
class Table:
    """A table for the report and the JSON results. Cells are str, int, float or None."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass(frozen=True)
class Headline:
    """A metric a probe puts on the report's summary cards.

    ``metric`` is the key in ``ProbeResult.metrics``; ``label`` may name settings the probe
    saved in ``data["settings"]`` as ``{key}`` (e.g. ``"ECE ({n_bins} bins)"``);
    ``percent`` shows the value as a percentage.
    """

    metric: str
    label: str
    percent: bool = False


class Offer:
    """Base of the typed records a probe hands to later probes (``Probe.offers``).

    Subclasses are dataclasses of JSON-safe fields: the runner saves them with the result
    (``asdict``) and rebuilds them with ``cls(**saved)`` when a run is resumed, so a later
    probe reads the same typed object either way (:meth:`ProbeContext.offer`).
    """


@dataclass
class ProbeResult:
    """What a probe found.

    ``metrics`` are flat scalars (finite floats or ints) that go to ``metrics.json`` as
    ``"<probe>.<key>"``. ``figures`` maps a file stem to a matplotlib figure (saved as
    PNG and embedded in the report, in insertion order, with ``captions[stem]``).
    ``warnings`` flag numbers that should not be trusted, each in a sentence.
    ``summary`` holds plain-language findings for the report's top. ``data`` holds any
    other JSON-serializable detail (e.g. per-case records with test-set indices).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    offer: Offer | None = None


OfferT = TypeVar("OfferT", bound=Offer)


@dataclass
class ProbeContext:
    """Everything a probe may read. Predictions are computed once and shared.

    ``results`` holds the results of probes that ran earlier in this run (see
    ``Probe.requires``). ``progress(description, total)`` returns a context manager
    yielding an ``advance(n)`` callable for a progress bar. ``sample_seed`` seeds
    :meth:`sample`; it does not depend on the training seed, so runs of a study that share
    their data draw the same test images. ``train_config`` is the run's training settings
    and ``model_factory()`` builds a fresh, untrained model of the run's architecture, for
    probes that train models of their own (``None`` where the caller has neither).
    ``shards`` runs per-image loops (:mod:`stresslab.shards`): here by default, or as Ray tasks.
    """

    model: nn.Module
    split: Split
    device: torch.device
    seed: int
    batch_size: int
    predictions: Predictions
    val_predictions: Predictions
    history: list[dict[str, float]] = field(default_factory=list)
    results: dict[str, ProbeResult] = field(default_factory=dict)
    progress: Callable[[str, int], Any] | None = None
    sample_seed: int = 0
    samples: dict[str, int] = field(default_factory=dict)
    train_config: TrainConfig | None = None
    model_factory: Callable[[], nn.Module] | None = None
    shards: ShardExecutor = field(default_factory=LocalShards)

    @property
    def info(self) -> DatasetInfo:
        return self.split.info

    @property
    def forward_batch(self) -> int:
        """Images per forward-only pass: the run's ``batch_size``, at most
        :data:`~stresslab.devices.FORWARD_PIXELS` input pixels of the dataset's images."""
        return forward_batch(self.batch_size, self.info.height, self.info.width)

    def generator(self, salt: int = 0) -> torch.Generator:
        """A CPU generator seeded from the run seed (plus ``salt``), for reproducible draws."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)

    def sample(self, n: int | None, purpose: str) -> Tensor:
        """Sorted test-set positions (n,) of a seeded class-stratified sample of size ``n``.

        Every probe that asks for the same ``n`` gets the same positions (and a larger ``n``
        contains a smaller one class by class), so their per-image results join; ``None``,
        0 or ``n >= N`` returns every position. ``purpose`` (e.g. ``"adversarial"``) is
        recorded in ``samples`` for the run's record.
        """
        total = len(self.predictions.labels)
        size = total if not n or n >= total else int(n)
        self.samples[purpose] = size
        if size == total:
            return torch.arange(total)
        return stratified_sample(self.predictions.labels, size, seed=self.sample_seed)

    def offer(self, probe: str, kind: type[OfferT]) -> OfferT | None:
        """The typed record ``probe`` offered in this run, or ``None`` if it did not run.

        Raises ``TypeError`` when ``probe`` offered something other than ``kind``.
        """
        res = self.results.get(probe)
        if res is None or res.offer is None:
            return None
        if not isinstance(res.offer, kind):
            raise TypeError(f"probe {probe} offers {type(res.offer).__name__}, not {kind.__name__}")
        return res.offer

    def track(self, description: str, total: int) -> AbstractContextManager[Callable[[int], None]]:
        """Progress context: ``with ctx.track("occlusion", n) as advance: advance(1)``."""
        if self.progress is None:
            return _null_progress()
        return self.progress(description, total)  # type: ignore[no-any-return]


class _NullProgress:
    def __enter__(self) -> Callable[[int], None]:
        def advance(n: int = 1) -> None:
            return None

        return advance

    def __exit__(self, *exc: object) -> None:
        return None


def _null_progress() -> Any:
    return _NullProgress()


class Probe(ABC):
    """Base class. Subclasses take keyword-only settings in ``__init__``.

    ``requires`` names probes whose results this one reads from ``ctx.results``; the
    runner runs them first. ``headlines`` are the metrics shown on the report's summary
    cards, ``order`` places the probe's section in the report (lower first; equal orders
    go by name), and ``offers`` is the :class:`Offer` type the probe puts in
    ``ProbeResult.offer`` for later probes.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    headlines: ClassVar[tuple[Headline, ...]] = ()
    order: ClassVar[int] = 100
    offers: ClassVar[type[Offer] | None] = None
    retired: ClassVar[dict[str, str]] = {}
    """Settings of earlier versions -> their form now, under ``probes.<name>.``, with
    ``{value}`` where the given value goes (see :func:`build_probe`)."""

    def check(self, model: nn.Module, sample: Tensor) -> None:
        """Check the settings against ``model`` before the run writes anything (default: nothing).

        ``sample`` is a few test images (N, C, H, W), float in [0, 1], on the model's device.
        Raise :class:`ConfigError` naming the setting at fault. A probe whose settings depend
        on the model (a layer name) resolves them here, in place on ``self``: the runner calls
        ``check`` once on each probe it built, then runs that same object, so there is no
        second copy to keep in step. ``check`` must leave the model as it found it (mode,
        weights, no hooks) and may be called again with the same result.
        """
        return None

    def needs_training_data(self) -> str | None:
        """Why this probe, with its settings, cannot run without training images, as a
        sentence; ``None`` (the default) when it runs on the test set alone (and the
        validation set where there is one). A run whose split has no training images (a
        folder of test images probed with a trained model) skips the probes that give a
        reason, before anything runs, and the report states each reason."""
        return None

    def without_training_data(self) -> str | None:
        """How this probe, with its settings, runs without training images where it takes
        the test set instead (split so that no image is both fitted on and scored), as a
        sentence the report states; ``None`` (the default) when it needs no training images
        or is skipped without them (:meth:`needs_training_data`)."""
        return None

    @abstractmethod
    def run(self, ctx: ProbeContext) -> ProbeResult:
        """Run on ``ctx``; leave the model in the mode it came in, with no hooks left."""


PROBES: Registry[type[Probe]] = Registry("probe")


def register_probe(name: str) -> Callable[[type[Probe]], type[Probe]]:
    """Class decorator: register a probe class under ``name`` and set ``cls.name``."""

    def deco(cls: type[Probe]) -> type[Probe]:
        cls.name = name
        return PROBES.register(name)(cls)

    return deco


def build_probe(name: str, settings: dict[str, Any]) -> Probe:
    """Instantiate probe ``name`` with ``settings`` through :meth:`Registry.build`.

    A retired setting is a ConfigError naming its new form; unknown settings and bad values
    are ConfigErrors naming ``probes.<name>``."""
    cls = PROBES.get(name, where=f"probes.{name}")
    for key, value in settings.items():
        if key in cls.retired:
            form = cls.retired[key].format(value=_yaml_value(value))
            raise ConfigError(f"probes.{name}.{key} is no longer a setting; write it as probes.{name}.{form}")
    probe: Probe = PROBES.build(name, where=f"probes.{name}", **settings)
    return probe


def _yaml_value(value: Any) -> str:
    """``value`` as a user writes it in YAML flow style (``true``, ``null``, ``gray``, ``0.5``)."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


@torch.no_grad()
def batched_forward(model: nn.Module, x: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """Logits for float images ``x`` (N, C, H, W) in [0, 1], in batches of ``batch_size``
    (at most :data:`~stresslab.devices.FORWARD_PIXELS` input pixels), returned on CPU."""
    batch_size = forward_batch(batch_size, x.shape[2], x.shape[3]) if x.ndim == 4 else max(1, batch_size)
    outs = []
    for i in range(0, len(x), batch_size):
        outs.append(model(x[i : i + batch_size].to(device)).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)
