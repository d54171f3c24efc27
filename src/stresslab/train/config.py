"""Training settings: optimizer, schedule, augmentation, adversarial training, SimCLR pretraining."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from stresslab.settings import Strict


class AugmentConfig(Strict):
    crop_padding: int = Field(0, ge=0)
    hflip: bool = False
    rotation_deg: float = Field(0.0, ge=0.0, le=180.0)
    # Photometric (see stresslab.data.photometric.PhotometricAugment); 0 turns each off.
    brightness: float = Field(0.0, ge=0.0, le=1.0)  # factor uniform in [1 - b, 1 + b]
    contrast: float = Field(0.0, ge=0.0, le=1.0)  # factor uniform in [1 - c, 1 + c]
    blur_prob: float = Field(0.0, ge=0.0, le=1.0)  # probability of a Gaussian blur
    blur_sigma: float = Field(1.5, ge=0.1)  # largest blur sigma, pixels
    noise_std: float = Field(0.0, ge=0.0, le=1.0)  # largest Gaussian noise std, pixel units of [0, 1]
    # Mixup / CutMix (soft targets) and random erasing; 0 turns each off.
    mixup_alpha: float = Field(0.0, ge=0.0)
    cutmix_alpha: float = Field(0.0, ge=0.0)
    cutmix_prob: float = Field(0.5, ge=0.0, le=1.0)
    erasing_prob: float = Field(0.0, ge=0.0, le=1.0)
    erasing_scale: tuple[float, float] = (0.02, 0.33)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)
    erasing_value: float | Literal["random"] = 0.0


class AdversarialTrainingConfig(Strict):
    method: Literal["fgsm_rs", "pgd"] = "fgsm_rs"
    epsilon: float = Field(0.1, gt=0.0, le=1.0)
    steps: int = Field(7, ge=1)
    step_size: float | None = Field(None, gt=0.0)
    fraction: float = Field(1.0, gt=0.0, le=1.0)


class SimCLRAugmentConfig(Strict):
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


class PretrainConfig(Strict):
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


class TrainConfig(Strict):
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
