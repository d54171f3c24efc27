"""Where a study's runs execute: here one after another, in local worker processes, or as
Ray tasks on a cluster. Every backend runs :func:`stresslab.study.worker.run_job` on plain
:class:`RunJob` records and reports each finished run to ``on_done`` in the driver."""

from __future__ import annotations

import logging
import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from stresslab.errors import ConfigError
from stresslab.shards import python_path
from stresslab.study.plan import FAILED, RunJob, cpu_count
from stresslab.study.spec import Resources
from stresslab.study.worker import run_job

log = logging.getLogger(__name__)

OnDone = Callable[[dict[str, Any]], None]


class Backend(ABC):
    """Runs jobs; ``threads`` is the torch thread count each run gets where its config sets none.

    Every backend gives each run the same ``threads`` (the study's ``resources.cpus``), so a
    run's numbers do not depend on where it executed: CPU sums in float32 and bfloat16 are
    ordered by the thread count, and a run with 2 threads differs in the last bits from one
    with 1.
    """

    def __init__(self, resources: Resources | None = None) -> None:
        self.resources = resources or Resources()

    @property
    def threads(self) -> int:
        return max(1, int(self.resources.cpus))

    @abstractmethod
    def run(self, jobs: Sequence[RunJob], on_done: OnDone) -> list[dict[str, Any]]:
        """Run every job; call ``on_done(record)`` as each finishes; return the records."""


class SequentialBackend(Backend):
    """One run after another in this process (no start-up cost)."""

    def run(self, jobs: Sequence[RunJob], on_done: OnDone) -> list[dict[str, Any]]:
        import torch

        records = []
        threads = torch.get_num_threads()
        for job in jobs:
            try:
                rec = run_job(job)
            finally:
                torch.set_num_threads(threads)  # a run's `threads` must not outlive it here
            records.append(rec)
            on_done(rec)
        return records


class ProcessBackend(Backend):
    """``workers`` runs at once in spawned processes, the CPUs split evenly between them."""

    def __init__(self, workers: int, resources: Resources | None = None) -> None:
        super().__init__(resources)
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        if workers * self.threads > cpu_count():
            log.warning(
                "%d workers x %d threads each (resources.cpus) exceed the %d CPUs here; "
                "the runs will compete for cores",
                workers,
                self.threads,
                cpu_count(),
            )

    def run(self, jobs: Sequence[RunJob], on_done: OnDone) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            pending: dict[Future[dict[str, Any]], RunJob] = {pool.submit(run_job, j): j for j in jobs}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    job = pending.pop(fut)
                    try:
                        rec = fut.result()
                    except BrokenProcessPool as e:  # a worker died (killed, out of memory)
                        rec = _lost(job, f"worker process died: {e}")
                    records.append(rec)
                    on_done(rec)
        return records


class RayBackend(Backend):
    """Each run a Ray task asking for ``resources`` (CPUs also set its torch threads).

    ``address`` joins a running cluster (``ray start --head`` on one node, ``ray start
    --address`` on the others); ``None`` starts a local Ray instance. The study directory
    must be on storage every node sees at the same path, and stresslab must be installed on
    every node.
    """

    def __init__(self, resources: Resources, address: str | None = None, **init_args: Any) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("the ray backend needs Ray: pip install 'stresslab[ray]'") from None
        super().__init__(resources)
        self.address = address
        self.init_args = init_args

    def run(self, jobs: Sequence[RunJob], on_done: OnDone) -> list[dict[str, Any]]:
        import ray

        started = False
        if not ray.is_initialized():
            args = {"runtime_env": {"env_vars": {"PYTHONPATH": python_path()}}, **self.init_args}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **args)
            started = True
        try:
            task = ray.remote(run_job).options(
                num_cpus=self.resources.cpus, num_gpus=self.resources.gpus, max_retries=0
            )
            pending = {task.remote(j): j for j in jobs}
            records = []
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        rec = ray.get(ref)
                    except Exception as e:  # the task's process or node was lost
                        rec = _lost(job, f"Ray task failed: {type(e).__name__}: {e}")
                    records.append(rec)
                    on_done(rec)
            return records
        finally:
            if started:
                ray.shutdown()


def _lost(job: RunJob, error: str) -> dict[str, Any]:
    from stresslab.files import atomic_write_json

    log.error("run %s seed %d: %s", job.arm, job.seed, error)
    atomic_write_json(job.error_file, {"error": error, "traceback": "", "arm": job.arm})
    return {
        "arm": job.arm,
        "seed": job.seed,
        "status": FAILED,
        "error": error,
        "seconds": 0.0,
        "failed_probes": [],
    }


def make_backend(
    name: str, workers: int = 1, resources: Resources | None = None, address: str | None = None
) -> Backend:
    """``local`` (``workers`` processes; 1 runs in this process) or ``ray``; every run gets
    ``resources.cpus`` torch threads on either."""
    if name == "local":
        if address:
            raise ConfigError("--ray-address needs --backend ray")
        return SequentialBackend(resources) if workers == 1 else ProcessBackend(workers, resources)
    if name == "ray":
        return RayBackend(resources or Resources(), address)
    raise ConfigError(f"unknown backend {name!r}; choose local or ray")
