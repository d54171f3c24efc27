"""The run configuration: YAML + presets + ``--set key=value`` overrides -> a validated model.

Unknown keys anywhere are errors that name the key. ``dump`` writes the resolved config
that ``load`` reads back unchanged, so a run directory can reproduce itself.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stresslab.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    dataset: str = "fashion_mnist"
    root: str | None = None
    download: bool = False
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    split_seed: int = 42
    train_subset: int | None = Field(None, gt=0)
    test_subset: int | None = Field(None, gt=0)
    image_size: int | None = Field(None, ge=8)
    channels: Literal[1, 3] | None = None
    skip_bad: bool = False


class ModelConfig(_Strict):
    name: str = "custom_cnn"
    args: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None  # "path/to/file.py:Class" or "package.module:Class"


class AugmentConfig(_Strict):
    crop_padding: int = Field(0, ge=0)
    hflip: bool = False
    rotation_deg: float = Field(0.0, ge=0.0, le=180.0)


class AdversarialTrainingConfig(_Strict):
    method: Literal["fgsm_rs", "pgd"] = "fgsm_rs"
    epsilon: float = Field(0.1, gt=0.0, le=1.0)
    steps: int = Field(7, ge=1)
    step_size: float | None = Field(None, gt=0.0)
    fraction: float = Field(1.0, gt=0.0, le=1.0)


class TrainConfig(_Strict):
    epochs: int = Field(15, ge=0)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0)
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    grad_clip: float | None = Field(None, gt=0.0)
    early_stopping_patience: int | None = Field(None, ge=1)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    adversarial: AdversarialTrainingConfig | None = None
    amp: Literal["auto", "off", "bf16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    eval_batch_size: int = Field(1024, ge=1)


DEFAULT_PROBES = (
    "evaluation",
    "failures",
    "explain",
    "calibration",
    "adversarial",
    "corruption",
    "label_issues",
    "shortcut",
)


def run_name(cfg: RunConfig) -> str:
    """The run's name: ``cfg.name``, else ``<dataset>-<model>``."""
    return cfg.name or f"{cfg.data.dataset}-{cfg.model.name}"


def _default_probes() -> dict[str, dict[str, Any]]:
    return {name: {} for name in DEFAULT_PROBES}


class RunConfig(_Strict):
    """A whole run: data, model, training, probes (name -> settings) and report."""

    name: str | None = None  # default: "<dataset>-<model>"
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    probes: dict[str, dict[str, Any]] = Field(default_factory=_default_probes)

    @field_validator("probes", mode="before")
    @classmethod
    def _probe_settings(cls, v: Any) -> Any:
        # `probes: [evaluation, failures]` is shorthand for default settings.
        if isinstance(v, list):
            return {str(name): {} for name in v}
        if isinstance(v, dict):
            return {k: (s if s is not None else {}) for k, s in v.items()}
        return v


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # A first look in under two minutes on a 2-core CPU.
    "quick": {
        "data": {"train_subset": 6000, "test_subset": 2000},
        "train": {"epochs": 3},
        "probes": {
            "evaluation": {},
            "failures": {},
            "explain": {"n_high_confidence": 4, "n_uncertain": 2},
            "calibration": {},
            "adversarial": {"max_images": 300},
            "corruption": {"max_images": 300, "severities": [1, 3, 5]},
            "label_issues": {},
            "shortcut": {"max_images": 500, "n_transplant": 200, "refine_images": 8},
        },
    },
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (dicts merge, others replace).

    ``probes`` is replaced whole when the override gives it, so a config's probe list is
    exactly the probes it runs.
    """
    out = copy.deepcopy(base)
    for k, v in override.items():
        if k != "probes" and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(item: str) -> dict[str, Any]:
    """``"train.epochs=3"`` -> ``{"train": {"epochs": 3}}``; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=3")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {e}") from e
    out: dict[str, Any] = {}
    cur = out
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def _merge_override(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    # --set merges into probes too (probes.failures.threshold=0.8 keeps other probes).
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_override(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def resolve(
    path: str | Path | None = None,
    preset: str | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Build the config: defaults <- ``base`` <- preset <- YAML file <- ``--set`` overrides."""
    raw: dict[str, Any] = copy.deepcopy(base) if base else {}
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        raw = deep_merge(raw, PRESETS[preset])
    source = "defaults"
    if path is not None:
        raw = deep_merge(raw, read_yaml(path))
        source = str(path)
    for item in overrides or []:
        raw = _merge_override(raw, parse_override(item))
    return validate(raw, source)


def validate(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a raw mapping; the error lists each bad field by its dotted path."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {loc}: {msg} (got {err.get('input')!r})")
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(lines)) from None


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config as plain JSON/YAML-safe data."""
    return cfg.model_dump(mode="json")


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML text (``resolve(path)`` of it gives ``cfg`` back)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
