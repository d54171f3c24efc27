"""SimCLR pretraining, top to bottom; then the ordinary trainer runs on the pretrained model.

Chen, Kornblith, Norouzi and Hinton (2020), "A Simple Framework for Contrastive Learning of
Visual Representations". Each step takes ``batch_size`` training images (labels unused),
makes two random views of each on the device
(:class:`~stresslab.data.simclr_augment.SimCLRAugment`), encodes both with the model's
``features()`` (dropout off, BatchNorm in training mode), projects them with an MLP head and
minimizes NT-Xent at ``temperature``. ``lr`` is the peak Adam learning rate per step,
cosine-decayed to 0 over all pretraining steps. The projection head is dropped afterwards;
the classifier head is then trained on a frozen encoder (``then: linear``) or with it
(``then: finetune``) by :func:`stresslab.train.loop.train`, so every probe runs on the
result as on any model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stresslab.data.base import Split, to_float
from stresslab.data.simclr_augment import SimCLRAugment
from stresslab.errors import CheckpointError, ConfigError, DataError
from stresslab.files import atomic_write_json
from stresslab.models.weights import load_checkpoint
from stresslab.progress import ProgressReporter
from stresslab.scoped import inference_scope
from stresslab.train.callbacks import Divergence, ProgressBar, TrackEpochs
from stresslab.train.checkpoint import rng_states, set_rng_states
from stresslab.train.config import PretrainConfig, TrainConfig
from stresslab.train.contrastive import ProjectionHead, nt_xent_logits
from stresslab.train.freeze import dropout_off, frozen_encoder
from stresslab.train.precision import use_bf16
from stresslab.train.schedule import lr_factor
from stresslab.train.trainer import StepOutput, Trainer

log = logging.getLogger(__name__)

PRETRAIN_LAST = "pretrain_last.pt"


@dataclass
class PretrainResult:
    """Per-epoch history: ``loss`` (mean NT-Xent), ``pair_acc`` (share of views whose most
    similar other view is their pair, in [0, 1]), ``lr``, ``seconds``, ``images_per_s``
    (source images; each makes two views)."""

    history: list[dict[str, float]] = field(default_factory=list)


def _encoder_params(model: nn.Module) -> list[nn.Parameter]:
    head = getattr(model, "head", None)
    skip = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
    return [p for p in model.parameters() if id(p) not in skip]


def pretrain(
    model: nn.Module,
    split: Split,
    cfg: PretrainConfig,
    *,
    device: torch.device,
    seed: int,
    amp: bool = False,
    channels_last: bool = False,
    checkpoint_dir: Path | None = None,
    meta: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
    progress: ProgressReporter | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> PretrainResult:
    """Pretrain ``model``'s encoder (everything but ``model.head``) in place with SimCLR.

    Writes ``checkpoint_dir/pretrain_last.pt`` atomically after every epoch (model, projection
    head, optimizer, schedule and RNG states; loads with ``weights_only=True``). ``resume`` is
    such a loaded file: pretraining continues after its epoch, and on CPU ends with the same
    weights as an uninterrupted run.

    Raises:
        ConfigError: the model has no ``features()``; DataError: fewer than 2 training images;
        TrainingDiverged: the loss became NaN/Inf.
    """
    trainer = SimCLRTrainer(
        model,
        split,
        cfg,
        device=device,
        seed=seed,
        amp=amp,
        channels_last=channels_last,
        checkpoint_dir=checkpoint_dir,
        meta=meta,
    )
    trainer.callbacks = [
        Divergence(_non_finite_error),
        *([TrackEpochs(on_epoch)] if on_epoch is not None else []),
        ProgressBar(progress, "SimCLR pretraining", prefix="SimCLR "),
    ]
    if resume is not None:
        trainer.resume(resume)
    # Dropout stays off in the encoder: two views of one image would otherwise be compared
    # through two different random masks. With custom_cnn's dropout (0.25 after each conv
    # stage, 0.5 on the embedding) on, 3 epochs on 3,000 Fashion-MNIST images paired 2.4% of
    # views with their partner (28% with dropout off) and gave 67.5% kNN accuracy (70.0%).
    with dropout_off(model):
        trainer.fit()
    return PretrainResult(history=trainer.history)


def _non_finite_error(trainer: Trainer, where: str) -> str:
    return f"SimCLR {where}; the last good checkpoint is kept. Try a lower train.pretrain.lr."


class SimCLRTrainer(Trainer):
    """SimCLR steps on the model's ``features()`` through a projection head (see :func:`pretrain`).

    Each epoch draws a permutation from a generator seeded with ``seed + 10``; the views draw
    from one seeded with ``seed + 11``. There is no validation set and no best epoch.
    """

    def __init__(
        self,
        model: nn.Module,
        split: Split,
        cfg: PretrainConfig,
        *,
        device: torch.device,
        seed: int,
        amp: bool = False,
        channels_last: bool = False,
        checkpoint_dir: Path | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if not callable(getattr(model, "features", None)):
            raise ConfigError(
                "train.pretrain: SimCLR needs a model with features() (the embedding it trains)"
            )
        self.cfg, self.amp, self.channels_last, self.meta = cfg, amp, channels_last, dict(meta or {})
        self.augment = SimCLRAugment(**cfg.augment.model_dump())
        self.train_x = split.train_x.to(device)
        self.n = len(self.train_x)
        if self.n < 2:
            raise DataError(
                f"SimCLR needs at least 2 training images (negatives come from the batch), got {self.n}"
            )
        self.batch = min(cfg.batch_size, self.n)
        steps_per_epoch = self.n // self.batch  # the last incomplete batch is dropped, as in SimCLR
        total_steps = steps_per_epoch * cfg.epochs
        self.generators = {
            "shuffle": torch.Generator().manual_seed(seed + 10),
            "augment": torch.Generator(device=device).manual_seed(seed + 11),
        }
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        with inference_scope(model), torch.no_grad():
            dim = model.features(to_float(self.train_x[:2])).shape[1]  # type: ignore[operator]
        self.projection = ProjectionHead(dim, cfg.projection_dim).to(device)
        params = _encoder_params(model) + list(self.projection.parameters())
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, total_steps, 0, "cosine")
        )
        super().__init__(
            model,
            optimizer,
            scheduler,
            device=device,
            epochs=cfg.epochs,
            steps_per_epoch=steps_per_epoch,
            checkpoint_dir=checkpoint_dir,
        )
        self.settings = cfg.model_dump(mode="json")
        self.perm = torch.empty(0, dtype=torch.long)
        self.loss_sum = torch.zeros((), device=device)
        self.hits = torch.zeros((), device=device, dtype=torch.long)

    def resume(self, state: dict[str, Any]) -> None:
        """Continue after the epoch of ``state`` (a loaded ``pretrain_last.pt`` of the same settings)."""
        saved = state["pretrain"]
        if saved["config"] != self.settings:
            raise CheckpointError(
                f"{PRETRAIN_LAST} was written with other train.pretrain settings: {saved['config']}"
            )
        self.model.load_state_dict(state["state_dict"])
        self.projection.load_state_dict(saved["projection"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.call("on_load_checkpoint", state)
        set_rng_states(saved["rng"], self.generators, self.device.type == "cuda")
        self.history = list(saved["history"])
        self.start_epoch = int(saved["epoch"]) + 1
        self.saved_epoch = self.start_epoch - 1
        log.info("SimCLR: resuming after epoch %d of %d", self.start_epoch - 1, self.cfg.epochs)

    def begin_epoch(self) -> None:
        self.projection.train()
        self.perm = torch.randperm(self.n, generator=self.generators["shuffle"]).to(self.device)
        self.loss_sum = torch.zeros((), device=self.device)
        self.hits = torch.zeros((), device=self.device, dtype=torch.long)

    def training_step(self, step: int) -> StepOutput:
        batch, aug_gen = self.batch, self.generators["augment"]
        x = to_float(self.train_x[self.perm[step * batch : (step + 1) * batch]])
        views = torch.cat([self.augment(x, aug_gen), self.augment(x, aug_gen)])  # (2B, C, H, W)
        if self.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            z = self.projection(self.model.features(views))  # type: ignore[operator]
        logits, targets = nt_xent_logits(z[:batch], z[batch:], self.cfg.temperature)
        return StepOutput(F.cross_entropy(logits, targets), logits, targets)

    def count(self, out: StepOutput) -> None:
        self.loss_sum += out.loss.detach()
        self.hits += (out.logits.detach().argmax(1) == out.labels).sum()

    def validate(self, train_seconds: float) -> dict[str, float]:
        """No validation: the record holds the epoch's mean loss and share of views paired."""
        images = self.batch * self.steps_per_epoch
        record = {
            "epoch": self.epoch,
            "loss": float(self.loss_sum) / self.steps_per_epoch,
            "pair_acc": int(self.hits) / (2 * images),
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": train_seconds,
            "images_per_s": images / train_seconds,
        }
        log.info(
            "SimCLR epoch %d/%d  loss %.4f  pair acc %.4f  %.0f img/s",
            self.epoch,
            self.cfg.epochs,
            record["loss"],
            record["pair_acc"],
            record["images_per_s"],
        )
        return record

    def checkpoint(self) -> None:
        """``pretrain_last.pt``: the model plus everything a resume needs under ``pretrain``."""
        if self.checkpoint_dir is None:
            return
        state = {
            "method": self.cfg.method,
            "epoch": self.epoch,
            "complete": self.epoch == self.cfg.epochs,
            "config": self.settings,
            "projection": {k: v.detach().cpu() for k, v in self.projection.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_states(self.generators, self.device.type == "cuda"),
            "history": self.history,
        }
        self.save_resumable(self.checkpoint_dir / PRETRAIN_LAST, {**self.meta, "pretrain": state})


@contextmanager
def pretraining(
    model: nn.Module,
    split: Split,
    cfg: TrainConfig,
    *,
    device: torch.device,
    seed: int,
    checkpoint_dir: Path | None = None,
    history_path: Path | None = None,
    meta: dict[str, Any] | None = None,
    progress: ProgressReporter | None = None,
) -> Iterator[PretrainResult | None]:
    """Pretrain as ``cfg.pretrain`` says (nothing when it is ``None``), then run the block that
    trains the classifier: with a frozen encoder for ``then: linear``, else the whole model.

    Continues from ``checkpoint_dir/pretrain_last.pt`` when it exists (a finished pretraining
    is loaded, not repeated) and writes the history to ``history_path`` (strict JSON).
    """
    pre = cfg.pretrain
    if pre is None:
        yield None
        return
    last = checkpoint_dir / PRETRAIN_LAST if checkpoint_dir is not None else None
    resume = load_checkpoint(last) if last is not None and last.is_file() else None
    result = pretrain(
        model,
        split,
        pre,
        device=device,
        seed=seed,
        amp=use_bf16(cfg.amp, device),
        channels_last=cfg.channels_last in ("on", "auto"),
        checkpoint_dir=checkpoint_dir,
        meta=meta,
        resume=resume,
        progress=progress,
    )
    if history_path is not None:
        atomic_write_json(history_path, result.history)
    if pre.then == "linear":
        with frozen_encoder(model):
            yield result
    else:
        yield result
