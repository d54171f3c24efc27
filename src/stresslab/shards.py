"""Per-image work split into shards of consecutive items, run here or as Ray tasks.

A probe's per-image loop (predictions, corrupted images, attacks) is written once as a
*shard function* ``fn(model, data, advance) -> R``: ``data`` maps names to tensors whose
first dimension runs over the shard's items (images, labels, official test indices),
``advance(n)`` moves the caller's progress bar. An executor cuts the items into shards,
runs ``fn`` on each and returns the results in item order, for the caller to merge.

:class:`LocalShards` (the default) runs one shard, everything, in this process on the
model as it is. :class:`RayShards` puts the model's weights and each shard's tensors in
Ray's object store and runs one task per shard with the run's torch threads; each worker
process rebuilds the model on CPU once per weights version and keeps it for its later tasks
(a shard function must leave the model as it found it, as probes do). Shard boundaries
fall on multiples of ``align`` (the caller's batch size) so that batches, and the random
draws seeded per batch, are the same whatever the split: results do not depend on the
number of shards.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
Advance = Callable[[int], None]


class ShardFn(Protocol[R_co]):
    """``(model, data, advance) -> result`` over one shard; must be picklable (a module-level
    function, or a ``functools.partial`` of one) to run as a Ray task."""

    def __call__(self, model: nn.Module, data: dict[str, Tensor], advance: Advance) -> R_co: ...


def _no_progress(n: int) -> None:
    """Progress inside a Ray task goes nowhere; the driver advances per finished shard."""


def shard_bounds(n: int, shards: int, align: int) -> list[tuple[int, int]]:
    """At most ``shards`` consecutive ``(start, stop)`` ranges covering ``range(n)``, every
    start a multiple of ``align`` (>= 1), as even as that allows; ``[]`` when ``n`` is 0."""
    if n <= 0:
        return []
    blocks = math.ceil(n / max(1, align))
    per = math.ceil(blocks / max(1, shards))
    step = per * max(1, align)
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _check_data(data: Mapping[str, Tensor]) -> int:
    sizes = {name: len(t) for name, t in data.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"shard data must share its first dimension; got sizes {sizes}")
    return next(iter(sizes.values()), 0)


class ShardExecutor(ABC):
    """Runs a shard function over the items of ``data`` and returns the results in order."""

    @abstractmethod
    def map(
        self,
        fn: ShardFn[R],
        model: nn.Module,
        data: Mapping[str, Tensor],
        *,
        align: int = 1,
        advance: Advance | None = None,
        units: Callable[[int], int] | None = None,
    ) -> list[R]:
        """``fn`` over shards of ``data`` (tensors of equal first dimension N), results in
        item order. ``align``: shard starts are multiples of it (the batch size). ``units(n)``:
        the progress units ``fn`` advances on a shard of ``n`` items, for executors whose
        shards cannot report progress as they go."""

    @abstractmethod
    def count(self, n: int, align: int = 1) -> int:
        """How many shards :meth:`map` cuts ``n`` items into (for progress totals)."""

    def __enter__(self) -> ShardExecutor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class LocalShards(ShardExecutor):
    """Shards run one after another in this process on the model as it is; by default one
    shard holding every item (more only to check that a split changes nothing)."""

    def __init__(self, shards: int = 1) -> None:
        self.shards = max(1, shards)

    def count(self, n: int, align: int = 1) -> int:
        return max(1, len(shard_bounds(n, self.shards, align)))

    def map(
        self,
        fn: ShardFn[R],
        model: nn.Module,
        data: Mapping[str, Tensor],
        *,
        align: int = 1,
        advance: Advance | None = None,
        units: Callable[[int], int] | None = None,
    ) -> list[R]:
        n = _check_data(data)
        bounds = shard_bounds(n, self.shards, align) or [(0, n)]
        step = advance or _no_progress
        return [fn(model, {k: v[a:b] for k, v in data.items()}, step) for a, b in bounds]


def _uses_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-d weights are stored channels-last (as training leaves them)."""
    for p in model.parameters():
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            return bool(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous())
    return False


def _rebuild(shipped: dict[str, Any]) -> nn.Module:
    """The model on CPU from what :meth:`RayShards.map` shipped, frozen and in eval mode."""
    if shipped["factory"] is not None:
        model = shipped["factory"]()
        model.load_state_dict(shipped["state"])
    else:
        model = shipped["module"]
    model = model.cpu()
    if shipped["channels_last"]:
        model.to(memory_format=torch.channels_last)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# The model a Ray worker process rebuilt last, keyed by the object-store id of the weights it
# came from: a worker runs many tasks (every probe's shards), and rebuilding the model per task
# (building it, initialising its weights, loading the shipped ones) cost more than a small
# model's shard (resnet18: 0.8 s per task).
_WORKER_MODEL: dict[str, nn.Module] = {}


def _worker_model(ref: Any) -> nn.Module:
    """The model of the shipped weights ``ref`` (an object reference), rebuilt once per worker
    process and weights version; in eval mode, frozen, as :func:`_rebuild` leaves it."""
    key = ref.hex()
    model = _WORKER_MODEL.get(key)
    if model is None:
        import ray

        _WORKER_MODEL.clear()
        model = _WORKER_MODEL[key] = _rebuild(ray.get(ref))
    return model.eval()


def run_shard(fn: ShardFn[R], shipped: list[Any], data: dict[str, Tensor], threads: int) -> R:
    """The body of one Ray task: set the threads, take the model (``shipped``: a one-element
    list holding the weights' object reference, so that Ray passes the reference rather than
    the weights), run ``fn`` on the shard."""
    torch.set_num_threads(threads)
    return fn(_worker_model(shipped[0]), data, _no_progress)


_REMOTE: list[Any] = []  # run_shard as a Ray remote function, made once per process


def _remote_run_shard() -> Any:
    """``run_shard`` as one Ray remote function for the process's life: each ``ray.remote``
    call makes a new function that Ray exports again and every worker imports again."""
    if not _REMOTE:
        import ray

        _REMOTE.append(ray.remote(run_shard))
    return _REMOTE[0]


class RayShards(ShardExecutor):
    """One Ray task per shard, each asking for ``threads`` CPUs and running with that many
    torch threads (the run's own count, so a task computes what this process would).

    ``factory()`` builds the run's model untrained; the task loads the shipped weights into
    it (without a factory the whole module is pickled). ``shards``: how many to cut
    (default: the cluster's CPUs / ``threads``). ``address`` joins a running cluster; None
    starts a local instance (``init_args`` go to ``ray.init``) at the first :meth:`map`, shut
    down when the ``with`` block exits.
    """

    def __init__(
        self,
        factory: Callable[[], nn.Module] | None,
        *,
        threads: int,
        address: str | None = None,
        shards: int | None = None,
        **init_args: Any,
    ) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            from stresslab.errors import ConfigError

            raise ConfigError("backend: ray needs Ray: pip install 'stresslab[ray]'") from None
        self.factory, self.threads, self.address = factory, max(1, threads), address
        self.shards, self.init_args, self._started = shards, init_args, False
        self._cache: tuple[tuple[int, int], Any] | None = None

    def _connect(self) -> None:
        """Join Ray (or start a local instance) on first use, not before: a run trains first."""
        import ray

        if not ray.is_initialized():
            args = {"runtime_env": {"env_vars": {"PYTHONPATH": python_path()}}, **self.init_args}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **args)
            self._started = True

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        import ray

        self._cache = None
        if self._started:
            ray.shutdown()
            self._started = False

    def n_shards(self) -> int:
        """``shards``, else the cluster's CPUs over the threads per task (at least 1)."""
        if self.shards:
            return self.shards
        import ray

        self._connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads)

    def count(self, n: int, align: int = 1) -> int:
        return max(1, len(shard_bounds(n, self.n_shards(), align)))

    def _shipped(self, model: nn.Module) -> Any:
        """The object-store reference of ``model``'s weights, put once per model and weights
        version (a probe that changed a weight in place would bump it)."""
        import ray

        tensors = [*model.parameters(), *model.buffers()]
        key = (id(model), sum(t._version for t in tensors))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        shipped = {
            "factory": self.factory,
            "state": state if self.factory is not None else None,
            "module": None if self.factory is not None else _cpu_copy(model),
            "channels_last": _uses_channels_last(model),
        }
        self._cache = (key, ray.put(shipped))
        return self._cache[1]

    def map(
        self,
        fn: ShardFn[R],
        model: nn.Module,
        data: Mapping[str, Tensor],
        *,
        align: int = 1,
        advance: Advance | None = None,
        units: Callable[[int], int] | None = None,
    ) -> list[R]:
        import ray

        bounds = shard_bounds(_check_data(data), self.n_shards(), align)
        if not bounds:
            return LocalShards().map(fn, model, data, align=align, advance=advance)
        shipped_ref = self._shipped(model)
        task: Any = _remote_run_shard().options(num_cpus=self.threads, max_retries=0)
        refs = []
        for a, b in bounds:
            part = ray.put({k: v[a:b].contiguous() for k, v in data.items()})
            refs.append(task.remote(fn, [shipped_ref], part, self.threads))
        log.info("%d items in %d Ray tasks", bounds[-1][1], len(refs))
        order = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = order[ref]
                results[i] = ray.get(ref)
                if advance is not None and units is not None:
                    advance(units(bounds[i][1] - bounds[i][0]))
        return results


def python_path() -> str:
    """This process's import path for stresslab first, absolute, so Ray workers (whose working
    directory differs) import the same code."""
    here = str(Path(__file__).resolve().parent.parent)  # the folder holding stresslab/
    rest = [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([here, *rest]))


def _cpu_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).cpu()


def keyed_generator(*keys: int | str) -> torch.Generator:
    """A CPU generator seeded from ``keys`` alone (e.g. run seed, purpose, the official test
    index of a batch's first image), so a draw does not depend on which shard makes it."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF)
