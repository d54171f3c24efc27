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
import time
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
from stresslab.errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from stresslab.files import atomic_write_json
from stresslab.models.weights import load_checkpoint
from stresslab.progress import ProgressReporter
from stresslab.scoped import inference_scope
from stresslab.train.checkpoint import save_checkpoint
from stresslab.train.config import PretrainConfig, TrainConfig
from stresslab.train.contrastive import ProjectionHead, nt_xent_logits
from stresslab.train.freeze import dropout_off, frozen_encoder
from stresslab.train.precision import use_bf16
from stresslab.train.schedule import lr_factor

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
    if not callable(getattr(model, "features", None)):
        raise ConfigError("train.pretrain: SimCLR needs a model with features() (the embedding it trains)")
    progress = progress or ProgressReporter(enabled=False)
    augment = SimCLRAugment(**cfg.augment.model_dump())
    train_x = split.train_x.to(device)
    n = len(train_x)
    if n < 2:
        raise DataError(f"SimCLR needs at least 2 training images (negatives come from the batch), got {n}")
    batch = min(cfg.batch_size, n)
    steps_per_epoch = n // batch  # the last incomplete batch is dropped, as in SimCLR
    total_steps = steps_per_epoch * cfg.epochs
    shuffle_gen = torch.Generator().manual_seed(seed + 10)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 11)

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    with inference_scope(model), torch.no_grad():
        dim = model.features(to_float(train_x[:2])).shape[1]  # type: ignore[operator]
    projection = ProjectionHead(dim, cfg.projection_dim).to(device)
    params = _encoder_params(model) + list(projection.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, 0, "cosine"))

    result, start_epoch = PretrainResult(), 1
    settings = cfg.model_dump(mode="json")
    if resume is not None:
        saved = resume["pretrain"]
        if saved["config"] != settings:
            raise CheckpointError(
                f"{PRETRAIN_LAST} was written with other train.pretrain settings: {saved['config']}"
            )
        model.load_state_dict(resume["state_dict"])
        projection.load_state_dict(saved["projection"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        shuffle_gen.set_state(saved["rng"]["shuffle"])
        aug_gen.set_state(saved["rng"]["augment"].to(aug_gen.get_state().device))
        torch.set_rng_state(saved["rng"]["torch"])
        if device.type == "cuda" and "cuda" in saved["rng"]:
            torch.cuda.set_rng_state(saved["rng"]["cuda"])
        result.history = list(saved["history"])
        start_epoch = int(saved["epoch"]) + 1
        log.info("SimCLR: resuming after epoch %d of %d", start_epoch - 1, cfg.epochs)

    # Dropout stays off in the encoder: two views of one image would otherwise be compared
    # through two different random masks. With custom_cnn's dropout (0.25 after each conv
    # stage, 0.5 on the embedding) on, 3 epochs on 3,000 Fashion-MNIST images paired 2.4% of
    # views with their partner (28% with dropout off) and gave 67.5% kNN accuracy (70.0%).
    total = max(0, cfg.epochs - start_epoch + 1) * steps_per_epoch
    with dropout_off(model), progress("SimCLR pretraining", total) as advance:
        for epoch in range(start_epoch, cfg.epochs + 1):
            model.train()
            projection.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=shuffle_gen).to(device)
            loss_sum = torch.zeros((), device=device)
            hits = torch.zeros((), device=device, dtype=torch.long)
            for step in range(steps_per_epoch):
                x = to_float(train_x[perm[step * batch : (step + 1) * batch]])
                views = torch.cat([augment(x, aug_gen), augment(x, aug_gen)])  # (2B, C, H, W)
                if channels_last:
                    views = views.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    z = projection(model.features(views))  # type: ignore[operator]
                logits, targets = nt_xent_logits(z[:batch], z[batch:], cfg.temperature)
                loss = F.cross_entropy(logits, targets)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"SimCLR loss became {loss.item()} at epoch {epoch}, step {step + 1}/"
                        f"{steps_per_epoch}; the last good checkpoint is kept. Try a lower train.pretrain.lr."
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach()
                hits += (logits.detach().argmax(1) == targets).sum()
                advance(1)
                if step % 20 == 0:
                    advance.describe(f"SimCLR epoch {epoch}/{cfg.epochs} loss {loss.item():.3f}")
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            record = {
                "epoch": epoch,
                "loss": float(loss_sum) / steps_per_epoch,
                "pair_acc": int(hits) / (2 * batch * steps_per_epoch),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": seconds,
                "images_per_s": batch * steps_per_epoch / seconds,
            }
            result.history.append(record)
            log.info(
                "SimCLR epoch %d/%d  loss %.4f  pair acc %.4f  %.0f img/s",
                epoch,
                cfg.epochs,
                record["loss"],
                record["pair_acc"],
                record["images_per_s"],
            )
            if checkpoint_dir is not None:
                rng = {
                    "shuffle": shuffle_gen.get_state(),
                    "augment": aug_gen.get_state().cpu(),
                    "torch": torch.get_rng_state(),
                }
                if device.type == "cuda":
                    rng["cuda"] = torch.cuda.get_rng_state()
                state = {
                    "method": cfg.method,
                    "epoch": epoch,
                    "complete": epoch == cfg.epochs,
                    "config": settings,
                    "projection": {k: v.detach().cpu() for k, v in projection.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng,
                    "history": result.history,
                }
                save_checkpoint(checkpoint_dir / PRETRAIN_LAST, model, {**(meta or {}), "pretrain": state})
            if on_epoch is not None:
                on_epoch(record)
    model.to(memory_format=torch.contiguous_format)
    return result


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
