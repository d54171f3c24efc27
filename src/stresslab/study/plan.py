"""The study directory and its runs: where each arm x seed lives and what state it is in.

::

    STUDY_DIR/study.resolved.yaml   the study, base inlined (the directory is self-contained)
    STUDY_DIR/runs/<arm>/seed-<s>/  an ordinary run directory (``stresslab run`` layout)
    STUDY_DIR/runs/<arm>/seed-<s>.error.json   why that run failed (removed once it succeeds)
    STUDY_DIR/study.json  report.html  figures/  gallery_images.npz  study.lock
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stresslab.errors import StresslabError
from stresslab.files import atomic_write_text, read_json, read_yaml
from stresslab.runs import config as config_mod
from stresslab.runs.directory import RunDir
from stresslab.study.spec import StudySpec, parse_study

PENDING, PARTIAL, DONE, FAILED = "pending", "partial", "done", "failed"


@dataclass(frozen=True)
class RunJob:
    """One arm x seed to run, as plain data (it crosses process and machine boundaries).

    ``config`` is the resolved config as a mapping; ``threads`` (torch threads) is applied
    when the config leaves ``threads`` unset; ``resume`` continues an existing run directory.
    """

    arm: str
    seed: int
    run_dir: str
    error_file: str
    config: dict[str, Any]
    threads: int | None = None
    resume: bool = False


class StudyDir:
    """A study directory (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    spec_file = property(lambda self: self.path / "study.resolved.yaml")
    summary = property(lambda self: self.path / "study.json")
    report = property(lambda self: self.path / "report.html")
    figures = property(lambda self: self.path / "figures")
    images = property(lambda self: self.path / "gallery_images.npz")

    def run_dir(self, arm: str, seed: int) -> Path:
        return self.path / "runs" / arm / f"seed-{seed}"

    def error_file(self, arm: str, seed: int) -> Path:
        return self.path / "runs" / arm / f"seed-{seed}.error.json"

    @staticmethod
    def is_study_dir(path: str | Path) -> bool:
        """True when ``path`` holds a study (not a single run)."""
        return (Path(path) / "study.resolved.yaml").is_file()

    @classmethod
    def create(cls, path: str | Path, spec: StudySpec) -> StudyDir:
        """A new study directory holding ``spec``; a non-empty existing one is refused."""
        p = Path(path)
        if p.exists() and any(p.iterdir()):
            raise StresslabError(
                f"study directory {p} already exists and is not empty; choose another --out "
                f"or continue it with --resume {p}"
            )
        p.mkdir(parents=True, exist_ok=True)
        sd = cls(p)
        atomic_write_text(sd.spec_file, yaml.safe_dump(spec.to_dict(), sort_keys=False))
        return sd

    @classmethod
    def open(cls, path: str | Path) -> StudyDir:
        if not cls.is_study_dir(path):
            raise StresslabError(f"{path} is not a study directory (no study.resolved.yaml)")
        return cls(path)

    def spec(self) -> StudySpec:
        """The study as saved in the directory."""
        raw = read_yaml(self.spec_file, what="study file")
        return parse_study(raw, source=str(self.spec_file), base_dir=self.path)

    def state(self, arm: str, seed: int) -> str:
        """``done`` (DONE marker), ``failed`` (error file), ``partial`` (started) or ``pending``."""
        run = RunDir(self.run_dir(arm, seed))
        if run.done.is_file():
            return DONE
        if self.error_file(arm, seed).is_file():
            return FAILED
        if run.config.is_file():
            return PARTIAL
        return PENDING

    def error(self, arm: str, seed: int) -> dict[str, Any]:
        path = self.error_file(arm, seed)
        return dict(read_json(path)) if path.is_file() else {}

    def jobs(self, spec: StudySpec, threads: int | None = None) -> list[RunJob]:
        """Every run not done yet, seed by seed (all arms of the first seed come first, so an
        interrupted study already compares every arm)."""
        out = []
        for seed in spec.seeds:
            for arm in spec.arms:
                state = self.state(arm, seed)
                if state == DONE:
                    continue
                run = self.run_dir(arm, seed)
                out.append(
                    RunJob(
                        arm=arm,
                        seed=seed,
                        run_dir=str(run),
                        error_file=str(self.error_file(arm, seed)),
                        config=absolute_paths(config_mod.to_dict(spec.config(arm, seed))),
                        threads=threads,
                        resume=RunDir(run).config.is_file(),
                    )
                )
        return out

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One study process per directory at a time (the runs lock their own directories)."""
        with RunDir(self.path).lock():
            yield


def absolute_paths(cfg: dict[str, Any]) -> dict[str, Any]:
    """``data.root`` and a file ``model.source`` made absolute (relative to the working
    directory, as ``stresslab run`` reads them), so a run means the same on any worker."""
    data, model = cfg.get("data", {}), cfg.get("model", {})
    if data.get("root") and not Path(data["root"]).expanduser().is_absolute():
        data["root"] = str(Path(data["root"]).expanduser().resolve())
    source = model.get("source")
    if source and ".py:" in source and not Path(source.split(":")[0]).is_absolute():
        file, cls = source.rsplit(":", 1)
        model["source"] = f"{Path(file).resolve()}:{cls}"
    return cfg


def cpu_count() -> int:
    """CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1
