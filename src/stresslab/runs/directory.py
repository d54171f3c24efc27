"""Run directories: a folder per run, its files, its lock."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import logging
import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from stresslab.errors import CheckpointError, StresslabError
from stresslab.files import read_json

log = logging.getLogger(__name__)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def git_sha() -> str | None:
    """The commit of the installed source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: torch.device, seed: int) -> dict[str, Any]:
    """Versions, device, threads and seed: what a reader needs to reproduce the numbers."""
    import numpy
    import sklearn

    env: dict[str, Any] = {
        "stresslab": _version("stresslab"),
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "seed": seed,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        import captum

        env["captum"] = captum.__version__
    except ImportError:  # pragma: no cover
        pass
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


class RunDir:
    """A run directory::

        RUN_DIR/config.resolved.yaml   env.json   history.json   training.json   warnings.json
        RUN_DIR/checkpoints/{last,best}.pt
        RUN_DIR/results/<probe>.json   results/<probe>/<figure>.png
        RUN_DIR/metrics.json           report.html   run.lock   DONE | FAILED
        RUN_DIR/predictions.npz        per-image test predictions (stresslab.runs.saved_predictions)
        RUN_DIR/diagnosis.csv          one row per test failure: its cause and evidence

    ``DONE`` marks a complete run, which is never replaced. ``FAILED`` (JSON: ``stage``,
    ``error``, ``traceback``, ``time``) marks a run that stopped on an error: ``--resume``
    continues it and a new run with the same ``--out`` replaces it. A directory with
    neither was killed (or is running): it can only be resumed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.resolved.yaml")
    env = property(lambda self: self.path / "env.json")
    history = property(lambda self: self.path / "history.json")
    training = property(lambda self: self.path / "training.json")
    source_checkpoint = property(lambda self: self.path / "source_checkpoint.json")
    run_warnings = property(lambda self: self.path / "warnings.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    best_checkpoint = property(lambda self: self.path / "checkpoints" / "best.pt")
    results = property(lambda self: self.path / "results")
    metrics = property(lambda self: self.path / "metrics.json")
    report = property(lambda self: self.path / "report.html")
    done = property(lambda self: self.path / "DONE")
    failed = property(lambda self: self.path / "FAILED")
    predictions = property(lambda self: self.path / "predictions.npz")
    diagnosis = property(lambda self: self.path / "diagnosis.csv")

    def final_weights(self) -> Path:
        """The checkpoint the run's probes used: ``training.json``'s ``final_weights``
        (``best.pt`` when the run has no record of it). Raises CheckpointError if missing."""
        name = "best.pt"
        if self.training.is_file():
            name = str(read_json(self.training).get("final_weights", name))
        path = self.checkpoints / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing")
        return path

    def failed_probes(self) -> list[str]:
        """Probes that raised and have no result since (``results/<probe>.failed.json``), sorted."""
        suffix = ".failed.json"
        names = (p.name[: -len(suffix)] for p in self.results.glob(f"*{suffix}"))
        return sorted(n for n in names if not self.result_json(n).is_file())

    def failure_file(self, probe: str) -> Path:
        return self.results / f"{probe}.failed.json"

    def result_json(self, probe: str) -> Path:
        return self.results / f"{probe}.json"

    def figure_dir(self, probe: str) -> Path:
        return self.results / probe

    @classmethod
    def check_new(cls, path: str | Path) -> bool:
        """Raise unless ``path`` may receive a new run; writes nothing.

        Returns ``False`` for a missing or empty folder and ``True`` for the folder of a
        failed run (``FAILED``), which :meth:`create` replaces. A complete run, a killed or
        running one, and any other non-empty folder are refused.
        """
        p = Path(path)
        if not p.exists():
            return False
        if not p.is_dir():
            raise StresslabError(f"output directory {p} already exists and is not a directory")
        if not any(p.iterdir()):
            return False
        here = cls(p)
        if here.done.is_file():
            raise StresslabError(
                f"output directory {p} already exists and holds a complete run, which is never "
                "replaced; choose another --out"
            )
        if here.config.is_file() and here.failed.is_file():
            here._check_unlocked()
            return True
        if here.config.is_file():
            raise StresslabError(
                f"output directory {p} already exists and holds an unfinished run (killed, or still "
                f"running); continue it with --resume {p} or choose another --out"
            )
        raise StresslabError(f"output directory {p} already exists and is not empty; choose another --out")

    @classmethod
    def create(cls, path: str | Path) -> RunDir:
        """Create a new run directory, replacing a failed run (see :meth:`check_new`)."""
        p = Path(path)
        run = cls(p)
        if cls.check_new(p):
            with run.lock():
                record = read_json(run.failed) if run.failed.is_file() else {}
                log.warning("replacing the failed run in %s (it failed: %s)", p, record.get("error", "?"))
                for child in p.iterdir():
                    if child.name == "run.lock":
                        continue
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        p.mkdir(parents=True, exist_ok=True)
        run.results.mkdir(exist_ok=True)
        run.checkpoints.mkdir(exist_ok=True)
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory (for resume and report)."""
        p = Path(path)
        if not (p / "config.resolved.yaml").is_file():
            raise StresslabError(f"{p} is not a run directory (no config.resolved.yaml)")
        return cls(p)

    def _check_unlocked(self) -> None:
        lock = self.path / "run.lock"
        pid = lock.read_text().strip() if lock.is_file() else ""
        if pid.isdigit() and _pid_alive(int(pid)):
            raise StresslabError(f"{self.path} is in use by process {pid} ({lock})")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock so two processes never write one run directory at once."""
        lock = self.path / "run.lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid = lock.read_text().strip() if lock.exists() else "?"
            if pid.isdigit() and not _pid_alive(int(pid)):
                lock.unlink(missing_ok=True)  # stale lock of a killed run
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            else:
                raise StresslabError(f"{self.path} is in use by process {pid} ({lock})") from None
        try:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            yield
        finally:
            lock.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def default_run_path(name: str, root: str | Path = "runs") -> Path:
    """``runs/<name>-<UTC timestamp>``; a suffix keeps it unique."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path
