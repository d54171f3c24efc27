"""The study file: a base config, seeds and arms (plus an optional grid), validated whole.

A study file is YAML::

    name: fmnist-architectures          # optional; default: the file's stem
    base: ../configs/fashion_mnist.yaml # a config path (relative to this file) or a mapping
    preset: quick                       # optional, as `stresslab run --preset`
    set: [train.epochs=5]               # optional, as `--set`, applied to every arm
    seeds: [0, 1, 2]
    arms:                               # name -> dotted overrides
      baseline: {}
      label_smoothing: {train.label_smoothing: 0.1}
    grid: {model.args.fc: [128, 256]}   # optional: the cartesian product becomes arms
    compare_to: baseline                # default: the first arm
    resources: {cpus: 1, gpus: 0}       # per run, for the ray backend
    checks:                             # optional: every arm's runs, after the study ran
      evaluation.accuracy: ">= 0.9"     #   conditions as a run's `checks:` section
      baseline: {max_negative_flip_rate: 0.03}  # rules against compare_to, same seed

Each arm x seed resolves to a :class:`RunConfig` exactly as ``stresslab run BASE --preset P
--set ...`` would, then the arm's overrides, then ``seed``. Every error names the study
file, the arm and the key.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stresslab.errors import ConfigError, StresslabError
from stresslab.files import read_yaml
from stresslab.runs import config as config_mod
from stresslab.runs.config import RunConfig

ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=,+-]{0,99}$")
TOP_KEYS = ("name", "base", "preset", "set", "seeds", "arms", "grid", "compare_to", "resources", "checks")
RESERVED = ("seed", "name")  # the study sets these per run


@dataclass(frozen=True)
class Resources:
    """What one run asks of a Ray cluster: CPUs (also its torch threads) and GPUs."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class Arm:
    """One arm: its dotted overrides (``grid`` holds the grid values that made it, if any)."""

    name: str
    overrides: dict[str, Any]
    grid: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySpec:
    """A validated study: ``base`` is the raw base mapping (a file's content, inlined)."""

    name: str
    source: str
    base: dict[str, Any]
    preset: str | None
    set: tuple[str, ...]
    seeds: tuple[int, ...]
    arms: dict[str, Arm]
    compare_to: str
    grid_keys: tuple[str, ...] = ()
    resources: Resources = Resources()
    checks: dict[str, Any] = field(default_factory=dict)  # the raw `checks:` mapping

    def config(self, arm: str, seed: int) -> RunConfig:
        """The resolved run config of ``arm`` with ``seed``; errors name file, arm and key."""
        if arm not in self.arms:
            raise ConfigError(f"{self.source}: no arm {arm!r}; arms: {', '.join(self.arms)}")
        raw = copy.deepcopy(self.base)
        if self.preset:
            raw = config_mod.deep_merge(config_mod.PRESETS[self.preset], raw)
        for item in self.set:
            raw = config_mod.apply_override(raw, *config_mod.split_override(item))
        for key, value in self.arms[arm].overrides.items():
            raw = config_mod.apply_override(raw, key, value)
        raw["seed"] = seed
        raw["name"] = f"{arm}-seed{seed}"
        return config_mod.validate(raw, f"{self.source}: arm {arm!r}")

    def to_dict(self) -> dict[str, Any]:
        """A self-contained study mapping (base inlined) that :func:`parse_study` reads back."""
        plain = [a for a in self.arms.values() if not a.grid]
        out: dict[str, Any] = {"name": self.name, "base": self.base}
        if self.preset:
            out["preset"] = self.preset
        out.update(set=list(self.set), seeds=list(self.seeds))
        out["arms"] = {a.name: dict(a.overrides) for a in plain}
        if self.grid_keys:
            values: dict[str, list[Any]] = {k: [] for k in self.grid_keys}
            for a in self.arms.values():
                for k in self.grid_keys:
                    if a.grid and a.grid[k] not in values[k]:
                        values[k].append(a.grid[k])
            out["grid"] = values
        out["compare_to"] = self.compare_to
        out["resources"] = {"cpus": self.resources.cpus, "gpus": self.resources.gpus}
        if self.checks:
            out["checks"] = copy.deepcopy(self.checks)
        return out


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file (see the module docstring)."""
    p = Path(path)
    raw = read_yaml(p, what="study file")
    raw.setdefault("name", p.stem)
    return parse_study(raw, source=str(p), base_dir=p.parent)


def _err(source: str, msg: str) -> ConfigError:
    return ConfigError(f"{source}: {msg}")


def _overrides(source: str, where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(source, f"{where}: expected a mapping of dotted keys to values, got {value!r}")
    out = {}
    for key, v in value.items():
        if str(key).split(".")[0] in RESERVED:
            raise _err(source, f"{where}: key {key!r}: {key} is set by the study (seeds, run names)")
        out[str(key)] = v
    return out


def _set_items(source: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        items = [
            f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in value.items()
        ]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise _err(source, f"set: expected a list of 'key=value' strings, got {value!r}")
    for item in items:
        key = config_mod.parse_override(item)  # syntax errors name the item
        if next(iter(key)) in RESERVED:
            raise _err(source, f"set: {item!r}: the study sets {next(iter(key))} itself")
    return tuple(items)


def _grid_name(values: dict[str, Any]) -> str:
    def text(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return "-".join(text(x) for x in v)
        if isinstance(v, dict):
            return "-".join(f"{k}{text(x)}" for k, x in v.items())
        return str(v).lower() if isinstance(v, bool) else str(v)

    name = ",".join(f"{k.split('.')[-1]}={text(v)}" for k, v in values.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "-", name)[:100]


def _checks(source: str, value: Any) -> dict[str, Any]:
    """The study's ``checks:`` mapping, validated as a run's (its baseline is the compare_to arm)."""
    from stresslab.runs.checks import parse_checks

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(source, f"checks: expected a mapping of metric key -> condition, got {value!r}")
    rules = value.get("baseline", {})
    if not isinstance(rules, dict) or "run" in rules:
        raise _err(source, "checks.baseline: the baseline is the compare_to arm; give only its rules")
    parse_checks({**value, "baseline": {**rules, "run": "compare_to"}}, f"{source}: checks")
    return copy.deepcopy(value)


def parse_study(raw: dict[str, Any], *, source: str = "study", base_dir: str | Path = ".") -> StudySpec:
    """Validate a study mapping; ``base`` paths are relative to ``base_dir``."""
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise _err(source, f"unknown key(s) {', '.join(unknown)}; accepted: {', '.join(TOP_KEYS)}")
    base_value = raw.get("base", {})
    if isinstance(base_value, str):
        base = read_yaml(Path(base_dir) / base_value)
    elif isinstance(base_value, dict):
        base = copy.deepcopy(base_value)
    else:
        raise _err(source, f"base: expected a config path or a mapping, got {base_value!r}")
    preset = raw.get("preset")
    if preset is not None and preset not in config_mod.PRESETS:
        raise _err(source, f"preset: unknown preset {preset!r}; choose from {', '.join(config_mod.PRESETS)}")
    seeds = raw.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise _err(source, f"seeds: expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _err(source, f"seeds: duplicates in {seeds!r}")

    arms: dict[str, Arm] = {}
    arms_raw = raw.get("arms") or {}
    if not isinstance(arms_raw, dict):
        raise _err(source, f"arms: expected a mapping of arm name -> overrides, got {arms_raw!r}")
    for name, over in arms_raw.items():
        if not ARM_NAME.match(str(name)):
            raise _err(source, f"arm {name!r}: names use letters, digits and . _ = , + - (100 at most)")
        arms[str(name)] = Arm(str(name), _overrides(source, f"arm {name!r}", over))
    grid_raw = raw.get("grid") or {}
    if not isinstance(grid_raw, dict):
        raise _err(source, f"grid: expected a mapping of dotted key -> list of values, got {grid_raw!r}")
    for key, values in grid_raw.items():
        if not isinstance(values, list) or not values:
            raise _err(source, f"grid: key {key!r}: expected a non-empty list of values, got {values!r}")
        _overrides(source, "grid", {key: None})
    keys = [str(k) for k in grid_raw]
    for combo in itertools.product(*(grid_raw[k] for k in keys)) if keys else ():
        values = dict(zip(keys, combo, strict=True))
        name = _grid_name(values)
        while name in arms:
            name = f"{name}+"
        arms[name] = Arm(name, dict(values), grid=dict(values))
    if not arms:
        raise _err(source, "no arms: give `arms` (name -> overrides) or a `grid`")
    compare_to = raw.get("compare_to", next(iter(arms)))
    if compare_to not in arms:
        raise _err(source, f"compare_to: {compare_to!r} is not an arm; arms: {', '.join(arms)}")
    res = raw.get("resources") or {}
    if not isinstance(res, dict) or set(res) - {"cpus", "gpus"}:
        raise _err(source, f"resources: expected {{cpus: N, gpus: N}}, got {res!r}")
    try:
        resources = Resources(float(res.get("cpus", 1)), float(res.get("gpus", 0)))
    except (TypeError, ValueError):
        raise _err(source, f"resources: cpus and gpus must be numbers, got {res!r}") from None
    if resources.cpus <= 0 or resources.gpus < 0:
        raise _err(source, f"resources: cpus must be > 0 and gpus >= 0, got {res!r}")

    spec = StudySpec(
        name=str(raw.get("name") or "study"),
        source=source,
        base=base,
        preset=preset,
        set=_set_items(source, raw.get("set")),
        seeds=tuple(seeds),
        arms=arms,
        compare_to=str(compare_to),
        grid_keys=tuple(keys),
        resources=resources,
        checks=_checks(source, raw.get("checks")),
    )
    validate_spec(spec)
    return spec


def validate_spec(spec: StudySpec) -> list[RunConfig]:
    """Resolve every arm x seed and check what can be checked without data: the dataset,
    the model and its arguments, the probes and their settings. Returns the configs."""
    from stresslab.data import DATASETS
    from stresslab.models import MODELS
    from stresslab.plugins import load_plugins
    from stresslab.probes import build_probe

    configs = []
    for arm in spec.arms:
        where = f"{spec.source}: arm {arm!r}"
        for seed in spec.seeds:
            configs.append(spec.config(arm, seed))
        cfg = configs[-1]
        try:
            load_plugins(cfg.plugins)
            DATASETS.get(cfg.data.dataset, where="data.dataset")
            if cfg.model.source is None:
                MODELS.get(cfg.model.name, where="model.name")
                MODELS.check(cfg.model.name, cfg.model.args, bound=1, where="model.args")
            for name, settings in cfg.probes.items():
                build_probe(name, settings)
            if spec.checks:
                from stresslab.runs.checks import check_before_run, parse_checks

                check_before_run(parse_checks({**spec.checks, "baseline": None}), cfg.probes)
        except StresslabError as e:
            raise ConfigError(f"{where}: {e}") from None
    return configs
