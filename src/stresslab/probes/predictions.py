"""Predictions computed once per model and split, shared by every probe."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.data.base import to_float
from stresslab.data.cache import release_pages
from stresslab.data.indexed import Images, IndexedImages
from stresslab.devices import forward_batch, model_device
from stresslab.metrics.projection import bounded
from stresslab.scoped import inference_scope
from stresslab.shards import Advance, LocalShards, ShardExecutor

#: Batches of a view of the image cache (:class:`IndexedImages`) copied into memory at a time.
VIEW_BATCHES = 16


@dataclass(frozen=True)
class Predictions:
    """Model outputs on one split, all on CPU.

    ``logits``: (N, K) float32; ``labels``, ``preds``: (N,) int64; ``embeddings``:
    (N, D) float32, the model's ``features()`` (empty (N, 0) when the model has none;
    features wider than :data:`~stresslab.metrics.projection.MAX_EMBEDDING_DIM` are kept
    as their seeded random projection to that width, the same in every run and process, so
    memory does not grow with the pixels);
    ``index``: (N,) int64 positions in the official split, so cases can be followed
    across runs.
    """

    logits: Tensor
    labels: Tensor
    embeddings: Tensor
    index: Tensor

    @property
    def probs(self) -> Tensor:
        """Softmax probabilities (N, K), rows sum to 1."""
        return F.softmax(self.logits, dim=1)

    @property
    def preds(self) -> Tensor:
        return self.logits.argmax(dim=1)

    @property
    def confidence(self) -> Tensor:
        """Max softmax probability (N,) in [1/K, 1]."""
        return self.probs.max(dim=1).values

    @property
    def entropy(self) -> Tensor:
        """Predictive entropy (N,) in nats, in [0, log K]."""
        logp = F.log_softmax(self.logits, dim=1)
        return -(logp.exp() * logp).sum(dim=1)

    @property
    def margin(self) -> Tensor:
        """Top-1 minus top-2 probability (N,) in [0, 1]."""
        top2 = self.probs.topk(2, dim=1).values
        return top2[:, 0] - top2[:, 1]

    @property
    def correct(self) -> Tensor:
        return self.preds == self.labels

    @classmethod
    def compute(
        cls,
        model: nn.Module,
        x: Images,
        y: Tensor,
        index: Tensor,
        *,
        batch_size: int = 512,
        device: torch.device | None = None,
        shards: ShardExecutor | None = None,
    ) -> Predictions:
        """Run ``model`` over images ``x`` (N, C, H, W; uint8 or float in [0, 1]) on the
        model's own device (``device``, when given, must be that device).

        ``shards`` splits the images into shards of whole batches (default: one, here), so
        every image meets the same batch whatever the split and the numbers do not change.
        A batch holds at most :data:`~stresslab.devices.FORWARD_PIXELS` input pixels
        (:func:`~stresslab.devices.forward_batch`: the run's 1,024 images at 28 px, 87 at
        96 px; one layer's output for 1,024 RGB images of 224 px is gigabytes).
        A view of the image cache is copied :data:`VIEW_BATCHES` whole batches at a time.
        """
        if device is not None and device.type != model_device(model).type:
            raise ValueError(f"the model is on {model_device(model)}, not on the device given ({device})")
        if x.ndim == 4:
            batch_size = forward_batch(batch_size, x.shape[2], x.shape[3])
        fn = functools.partial(predict_shard, batch_size=batch_size)
        runner = shards or LocalShards()
        out = _Outputs(len(x))
        if isinstance(x, IndexedImages):
            step = batch_size * VIEW_BATCHES
            for i in range(0, len(x), step):
                out.take(runner.map(fn, model, {"x": x[i : i + step]}, align=batch_size))
        else:
            out.take(runner.map(fn, model, {"x": x}, align=batch_size))
        lg = out.logits if out.logits is not None else torch.empty(0, 0)
        emb = out.features if out.features is not None else torch.empty(len(x), 0)
        return cls(logits=lg, labels=y.long().cpu(), embeddings=emb, index=index.long().cpu())


class _Outputs:
    """The logits and features of ``n`` images, written in order into two tensors allocated
    once, at the first batch, each per-batch tensor dropped as it is copied in: the outputs
    are held once, not as batches and then their concatenation."""

    def __init__(self, n: int) -> None:
        self.n, self.at = n, 0
        self.logits: Tensor | None = None
        self.features: Tensor | None = None

    def take(self, parts: list[tuple[list[Tensor], list[Tensor]]]) -> None:
        """Copy shards' (per-batch logits, per-batch features) in order, emptying ``parts``."""
        parts.reverse()
        while parts:
            logits, feats = parts.pop()
            for j, lg in enumerate(logits):
                self.logits = self._put(self.logits, lg)
                if feats:
                    self.features = self._put(self.features, feats[j])
                self.at += len(lg)
            del logits, feats

    def _put(self, dest: Tensor | None, batch: Tensor) -> Tensor:
        if dest is None:
            dest = torch.empty((self.n, *batch.shape[1:]), dtype=batch.dtype)
        dest[self.at : self.at + len(batch)] = batch
        return dest


def predict_shard(
    model: nn.Module, data: dict[str, Tensor], advance: Advance, *, batch_size: int
) -> tuple[list[Tensor], list[Tensor]]:
    """Logits (n, K) and features (n, D) of images ``data["x"]`` (n, C, H, W), in batches of
    ``batch_size``, as per-batch CPU float32 lists (features empty when the model has none)."""
    x, device = data["x"], model_device(model)
    logits, feats = [], []
    has_features = callable(getattr(model, "features", None))
    with inference_scope(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = to_float(x[i : i + batch_size]).to(device)
            if has_features:
                f = model.features(xb)  # type: ignore[operator]
                head = getattr(model, "head", None)
                out = head(f) if callable(head) else model(xb)
                feats.append(bounded(f.float().cpu()))  # at most MAX_EMBEDDING_DIM wide
            else:
                out = model(xb)
            logits.append(out.float().cpu())
            release_pages()  # a cached test set's pages read so far leave the resident set
    return logits, feats
