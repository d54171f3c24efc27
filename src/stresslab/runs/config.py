"""The run configuration: YAML + presets + ``--set key=value`` overrides -> a validated model.

Unknown keys anywhere are errors that name the key. ``dump`` writes the resolved config
that ``load`` reads back unchanged, so a run directory can reproduce itself.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from stresslab.errors import ConfigError
from stresslab.files import read_yaml
from stresslab.runs.card import CardConfig
from stresslab.runs.checks.spec import ChecksConfig
from stresslab.settings import Strict
from stresslab.train.config import TrainConfig


class DataConfig(Strict):
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
    # Official training-set indices to leave out, and official training index -> new class
    # (e.g. the labels label_issues flags in cross_val mode; see `stresslab suggest`).
    drop_train_indices: list[int] = Field(default_factory=list)
    relabel: dict[int, int] = Field(default_factory=dict)
    # A trained model's classes in label order: class folders are matched to them by name
    # (image_folder); set from the checkpoint by `stresslab run --checkpoint`.
    class_names: list[str] | None = None
    # Resize the shorter side to image_size / crop_pct, then centre-crop (a model's own
    # preprocessing, as timm's and torchvision's evaluation transforms; image_folder).
    crop_pct: float | None = Field(None, gt=0.0, le=1.0)
    # Large image folders / .npz files are decoded once into an on-disk uint8 cache (auto:
    # above 1 GiB decoded); cache_dir defaults to $STRESSLAB_CACHE or ~/.cache/stresslab.
    cache: Literal["auto", "always", "never"] = "auto"
    cache_dir: str | None = None


class ModelConfig(Strict):
    name: str = "custom_cnn"  # registered, or "timm:<model>" / "torchvision:<model>"
    args: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None  # "path/to/file.py:Class" or "package.module:Class"
    weights: str | None = None  # timm:/torchvision: models: a local .pt state dict or .safetensors


# A group or run name is also a folder name: no slashes or quotes, not starting with a dot.
_NAME = r"^[^/\\'\"`.][^/\\'\"`]*$"


class TrackingConfig(Strict):
    """Experiment trackers, each off unless switched on (see :mod:`stresslab.runs.tracking`).

    ``group`` gathers runs (a study's arms and seeds): one MLflow parent run per group with
    each run nested under it, and one TensorBoard folder per run under
    ``<tensorboard_dir or the run dir's parent/tensorboard>/<group>/<run_name>``.
    ``run_name`` names the run in both (default: the run directory's name).
    """

    tensorboard: bool = False
    tensorboard_dir: str | None = None  # default: RUN_DIR/tensorboard, or as above with a group
    mlflow: bool = False
    mlflow_uri: str | None = None  # default: a file store in <run dir's parent>/mlruns
    experiment: str = Field("stresslab", min_length=1)
    group: str | None = Field(None, pattern=_NAME)
    run_name: str | None = Field(None, pattern=_NAME)


DEFAULT_PROBES = (
    "evaluation",
    "failures",
    "data_audit",
    "explain",
    "calibration",
    "adversarial",
    "corruption",
    "representation",
    "ood",
    "label_issues",
    "shortcut",
)


def run_name(cfg: RunConfig) -> str:
    """The run's name: ``cfg.name``, else ``<dataset>-<model>``."""
    return cfg.name or f"{cfg.data.dataset}-{cfg.model.name}"


def _default_probes() -> dict[str, dict[str, Any]]:
    return {name: {} for name in DEFAULT_PROBES}


class RunConfig(Strict):
    """A whole run: data, model, training, probes (name -> settings), report and tracking."""

    name: str | None = None  # default: "<dataset>-<model>"
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    # Per-image work (predictions, corruptions, attacks) here, or in shards as Ray tasks.
    backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None  # HOST:6379 of a running cluster; None: a local instance
    shards: int | None = Field(None, ge=1)  # Ray tasks per loop; None: cluster CPUs / threads
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    probes: dict[str, dict[str, Any]] = Field(default_factory=_default_probes)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    # Importable module paths whose import registers the user's own parts (datasets, models,
    # probes, attacks, attribution methods, corruptions); imported before any name is looked up.
    plugins: list[str] = Field(default_factory=list)
    # Release gates and the model card (stresslab.runs.checks, stresslab.runs.card).
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    card: CardConfig = Field(default_factory=CardConfig)

    @field_validator("probes", mode="before")
    @classmethod
    def _probe_settings(cls, v: Any) -> Any:
        # `probes: [evaluation, failures]` is shorthand for default settings.
        if isinstance(v, list):
            return {str(name): {} for name in v}
        if isinstance(v, dict):
            return {k: (s if s is not None else {}) for k, s in v.items()}
        return v

    @field_validator("ray_address")
    @classmethod
    def _address_needs_ray(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("backend") != "ray":
            raise ValueError("ray_address needs backend: ray")
        return v


# The default study: what `stresslab run` trains when no config file is given, spelled out in
# configs/fashion_mnist.yaml. Fields not named here keep the schema's defaults, which any
# config file starts from. Why this recipe: the README's "Why this default".
DEFAULT_STUDY: dict[str, Any] = {
    "name": "fashion_mnist",
    "model": {"name": "fast_cnn"},
    "train": {
        "epochs": 8,
        "batch_size": 256,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "schedule": "linear",
        "warmup_epochs": 1.5,
        "label_smoothing": 0.1,
        "ema_decay": 0.99,
        "augment": {"hflip": True},
    },
}

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # A first look in under two minutes on a 2-core CPU.
    "quick": {
        "data": {"train_subset": 12000, "test_subset": 2000},
        "train": {"epochs": 3},
        "probes": {
            "evaluation": {},
            "failures": {},
            "explain": {
                "n_high_confidence": 4,
                "n_uncertain": 2,
                "methods": {
                    "gradcam": {},
                    "saliency": {},
                    "smoothgrad": {"samples": 20},
                    "occlusion": {"window": 8, "stride": 2, "fill": "gray"},
                },
            },
            "calibration": {},
            "adversarial": {"max_images": 300},
            "corruption": {"max_images": 300, "severities": [1, 3, 5]},
            "representation": {"max_train": 3000, "max_test": 1000, "map_points": 500},
            "ood": {"n_images": 200, "max_train": 1000},
            "data_audit": {"max_train": 3000, "max_test": 1000},
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


def split_override(item: str) -> tuple[str, Any]:
    """``"train.epochs=3"`` -> ``("train.epochs", 3)``; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=3")
    key, raw = item.split("=", 1)
    if not [p for p in key.strip().split(".") if p]:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {e}") from e
    return key.strip(), value


def parse_override(item: str) -> dict[str, Any]:
    """``"train.epochs=3"`` -> ``{"train": {"epochs": 3}}``; the value is parsed as YAML."""
    return dotted(*split_override(item))


def apply_override(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``base`` with the dotted ``key`` set to ``value`` the way ``--set`` does.

    Mappings merge at every level (``train.augment.hflip=true`` keeps the other augment
    settings; ``probes.explain.n_correct=5`` keeps the other probes and explain's other
    settings); other values replace. One exception makes one rule for choosing probes:
    ``probes`` itself (a list or a mapping) replaces the probe set, so the probes named are
    exactly the probes that run, as with ``probes:`` in a YAML file.
    """
    out = copy.deepcopy(base)
    if [p for p in str(key).strip().split(".") if p] == ["probes"]:
        out["probes"] = copy.deepcopy(value)
        return out
    if isinstance(out.get("probes"), list):  # `[evaluation, failures]`: default settings each
        out["probes"] = {str(name): {} for name in out["probes"]}
    return _merge_override(out, dotted(key, value))


def _merge_override(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    # Dotted settings merge into mappings at every level, probes included.
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_override(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def dotted(key: str, value: Any) -> dict[str, Any]:
    """``("train.epochs", 3)`` -> ``{"train": {"epochs": 3}}``."""
    parts = [p for p in str(key).strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {key!r}: empty key")
    out: dict[str, Any] = {}
    cur = out
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def resolve(
    path: str | Path | Mapping[str, Any] | None = None,
    preset: str | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Build the config: defaults <- ``base`` <- preset <- YAML file <- ``--set`` overrides.

    ``path`` may also be the YAML file's content as a mapping. ``overrides`` are
    ``"key=value"`` strings (the value parsed as YAML) or a mapping of dotted keys to values
    (``{"train.epochs": 3}``), applied in order by :func:`apply_override`. The probes a
    YAML file or an override names under ``probes`` (a list or a mapping) are exactly the
    probes that run; a dotted setting of one probe (``probes.explain.n_correct=5``) merges
    into that probe's settings and keeps the others. Without a YAML file, the defaults are those of
    the default study (:data:`DEFAULT_STUDY`, the same as ``configs/fashion_mnist.yaml``) rather
    than the bare schema's.
    """
    raw: dict[str, Any] = copy.deepcopy(DEFAULT_STUDY) if path is None else {}
    if base:
        raw = deep_merge(raw, base)
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        raw = deep_merge(raw, PRESETS[preset])
    source = "defaults"
    if isinstance(path, Mapping):
        raw = deep_merge(raw, dict(path))
        source = "config"
    elif path is not None:
        raw = deep_merge(raw, read_yaml(path))
        source = str(path)
    if isinstance(overrides, Mapping):
        pairs = [(str(k), v) for k, v in overrides.items()]
    else:
        pairs = [split_override(item) for item in overrides or []]
    for key, value in pairs:
        raw = apply_override(raw, key, value)
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
