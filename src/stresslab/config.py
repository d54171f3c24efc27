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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    name: str = "custom_cnn"  # registered, or "timm:<model>" / "torchvision:<model>"
    args: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None  # "path/to/file.py:Class" or "package.module:Class"
    weights: str | None = None  # timm:/torchvision: models: a local .pt state dict or .safetensors


class AugmentConfig(_Strict):
    crop_padding: int = Field(0, ge=0)
    hflip: bool = False
    rotation_deg: float = Field(0.0, ge=0.0, le=180.0)
    # Mixup / CutMix (soft targets) and random erasing; 0 turns each off.
    mixup_alpha: float = Field(0.0, ge=0.0)
    cutmix_alpha: float = Field(0.0, ge=0.0)
    cutmix_prob: float = Field(0.5, ge=0.0, le=1.0)
    erasing_prob: float = Field(0.0, ge=0.0, le=1.0)
    erasing_scale: tuple[float, float] = (0.02, 0.33)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)
    erasing_value: float | Literal["random"] = 0.0


class AdversarialTrainingConfig(_Strict):
    method: Literal["fgsm_rs", "pgd"] = "fgsm_rs"
    epsilon: float = Field(0.1, gt=0.0, le=1.0)
    steps: int = Field(7, ge=1)
    step_size: float | None = Field(None, gt=0.0)
    fraction: float = Field(1.0, gt=0.0, le=1.0)


class SimCLRAugmentConfig(_Strict):
    """SimCLR's random views (see ``stresslab.data.simclr_augment.SimCLRAugment``)."""

    crop_scale: tuple[float, float] = (0.2, 1.0)  # area fractions of the random resized crop
    crop_ratio: tuple[float, float] = (0.75, 4 / 3)  # aspect ratio (width / height) range
    hflip: float = Field(0.5, ge=0.0, le=1.0)  # probability
    jitter: float = Field(0.8, ge=0.0, le=1.0)  # probability of colour jitter (colour images only)
    jitter_strength: float = Field(0.5, ge=0.0, le=1.25)
    grayscale: float = Field(0.2, ge=0.0, le=1.0)  # probability (colour images only)
    blur: float = Field(0.5, ge=0.0, le=1.0)  # probability
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # pixels
    noise_std: float = Field(0.0, ge=0.0)  # pixel units of [0, 1] images

    @model_validator(mode="after")
    def _ranges(self) -> SimCLRAugmentConfig:
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {list(self.crop_scale)}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < min <= max, got {list(self.crop_ratio)}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < min <= max, got {list(self.blur_sigma)}")
        return self


class PretrainConfig(_Strict):
    """Self-supervised pretraining before the supervised phase (``train.pretrain``)."""

    method: Literal["simclr"] = "simclr"
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=2)  # images per step (2 views each)
    lr: float = Field(1e-3, gt=0.0)  # peak Adam learning rate per step, cosine-decayed to 0
    weight_decay: float = Field(0.0, ge=0.0)
    temperature: float = Field(0.5, gt=0.0)
    projection_dim: int = Field(128, ge=1)
    augment: SimCLRAugmentConfig = Field(default_factory=SimCLRAugmentConfig)
    then: Literal["linear", "finetune"] = "linear"  # linear: frozen encoder; finetune: whole model


class TrainConfig(_Strict):
    epochs: int = Field(15, ge=0)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0)
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0.0)
    final_lr_fraction: float = Field(0.0, ge=0.0, le=1.0)  # of the peak lr, where the decay ends
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)  # per step; None: no weight averaging
    grad_clip: float | None = Field(None, gt=0.0)
    early_stopping_patience: int | None = Field(None, ge=1)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    adversarial: AdversarialTrainingConfig | None = None
    amp: Literal["auto", "off", "bf16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    eval_batch_size: int = Field(1024, ge=1)
    pretrain: PretrainConfig | None = None

    @field_validator("amp", "channels_last", mode="before")
    @classmethod
    def _yaml_switches(cls, v: Any) -> Any:
        # YAML reads a bare off/on as a boolean: `amp: off` means "off".
        return {False: "off", True: "on"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _pretrain_then_train(self) -> TrainConfig:
        if self.pretrain is not None and self.epochs < 1:
            raise ValueError("train.pretrain needs train.epochs >= 1 to train the classifier afterwards")
        return self


# A group or run name is also a folder name: no slashes or quotes, not starting with a dot.
_NAME = r"^[^/\\'\"`.][^/\\'\"`]*$"


class TrackingConfig(_Strict):
    """Experiment trackers, each off unless switched on (see :mod:`stresslab.tracking`).

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
    "explain",
    "calibration",
    "adversarial",
    "corruption",
    "representation",
    "label_issues",
    "shortcut",
)


def run_name(cfg: RunConfig) -> str:
    """The run's name: ``cfg.name``, else ``<dataset>-<model>``."""
    return cfg.name or f"{cfg.data.dataset}-{cfg.model.name}"


def _default_probes() -> dict[str, dict[str, Any]]:
    return {name: {} for name in DEFAULT_PROBES}


class RunConfig(_Strict):
    """A whole run: data, model, training, probes (name -> settings), report and tracking."""

    name: str | None = None  # default: "<dataset>-<model>"
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    probes: dict[str, dict[str, Any]] = Field(default_factory=_default_probes)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("probes", mode="before")
    @classmethod
    def _probe_settings(cls, v: Any) -> Any:
        # `probes: [evaluation, failures]` is shorthand for default settings.
        if isinstance(v, list):
            return {str(name): {} for name in v}
        if isinstance(v, dict):
            return {k: (s if s is not None else {}) for k, s in v.items()}
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
    if not [p for p in key.strip().split(".") if p]:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {e}") from e
    return dotted(key, value)


def merge_override(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge one parsed override (see :func:`parse_override`) into a copy of ``base`` the way
    ``--set`` does: dicts merge at every level, probes included; other values replace."""
    return _merge_override(base, override)


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
    (``{"train.epochs": 3}``), applied in order. Without a YAML file, the defaults are those of
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
        layers = [dotted(k, v) for k, v in overrides.items()]
    else:
        layers = [parse_override(item) for item in overrides or []]
    for layer in layers:
        raw = _merge_override(raw, layer)
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
