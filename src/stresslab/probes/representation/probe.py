"""The ``representation`` probe: what the model's embeddings know, and where its failures sit."""

from __future__ import annotations

import logging
from typing import Any

import torch

from stresslab.data.cache import release_pages
from stresslab.data.sampling import stratified_sample
from stresslab.metrics.confusion import confusion_counts, top_confused_pairs
from stresslab.metrics.duplicates import exact_duplicates, near_duplicates
from stresslab.metrics.neighbors import cosine_topk, knn_vote
from stresslab.probes.base import Headline, Probe, ProbeContext, ProbeResult, register_probe
from stresslab.probes.failures import FailureCases, failure_cases
from stresslab.probes.predictions import Predictions
from stresslab.probes.representation import present
from stresslab.probes.representation.clusters import cluster_report
from stresslab.probes.representation.duplicate_report import duplicate_section
from stresslab.probes.representation.embedding_map import tsne_map
from stresslab.probes.representation.failure_neighbours import failure_records, shares
from stresslab.probes.representation.linear import linear_probe

log = logging.getLogger(__name__)


@register_probe("representation")
class RepresentationProbe(Probe):
    """The embeddings before the classifier head (``features()``), judged on their own.

    For each failure, its ``k`` nearest training images (cosine) and the share of them that
    carry the predicted versus the true label; kNN accuracy (majority vote, ties to the
    nearest) and a linear probe (logistic regression on standardized frozen features) from
    training to test embeddings; k-means with one cluster per class (purity, NMI, ARI,
    silhouette, cluster x class table); a t-SNE map of test embeddings; train/test duplicates,
    exact (hash of the uint8 pixels, whole sets) and near (cosine similarity >=
    ``near_duplicate_threshold`` in feature space).

    Training embeddings are computed on a seeded class-stratified sample of ``max_train``
    images (``None``: all); k-means uses ``max_test`` test images and the map ``map_points``,
    both drawn with ``ctx.sample``. Every number states its sample size.
    """

    order = 35
    requires = ("failures",)
    headlines = (
        Headline("knn_accuracy", "kNN accuracy (k={k})", percent=True),
        Headline("linear_probe_accuracy", "linear probe accuracy", percent=True),
        Headline("kmeans_nmi", "k-means NMI"),
    )

    def __init__(
        self,
        *,
        k: int = 10,
        gallery_neighbours: int = 6,
        n_gallery: int = 8,
        n_examples: int = 4,
        max_train: int | None = 10000,
        max_test: int | None = 5000,
        map_points: int = 1500,
        near_duplicate_threshold: float = 0.999,
        threshold: float = 0.9,
        n_pairs: int = 3,
        linear_c: float = 1.0,
        linear_max_iter: int = 500,
        kmeans_n_init: int = 4,
    ) -> None:
        for name, v in (
            ("k", k),
            ("gallery_neighbours", gallery_neighbours),
            ("kmeans_n_init", kmeans_n_init),
        ):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        for name, size in (("max_train", max_train), ("max_test", max_test)):
            if size is not None and int(size) < 2:
                raise ValueError(f"{name} must be >= 2 or null (all), got {size}")
        if map_points < 0 or n_gallery < 0 or n_examples < 0 or n_pairs < 0:
            raise ValueError("map_points, n_gallery, n_examples and n_pairs must be >= 0")
        if not -1.0 <= near_duplicate_threshold <= 1.0:
            raise ValueError(
                f"near_duplicate_threshold is a cosine similarity in [-1, 1], got {near_duplicate_threshold}"
            )
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if linear_c <= 0 or linear_max_iter < 1:
            raise ValueError("linear_c must be > 0 and linear_max_iter >= 1")
        self.k, self.gallery_neighbours, self.n_gallery, self.n_examples = (
            k,
            gallery_neighbours,
            n_gallery,
            n_examples,
        )
        self.max_train, self.max_test, self.map_points = max_train, max_test, map_points
        self.near_threshold, self.threshold, self.n_pairs = near_duplicate_threshold, threshold, n_pairs
        self.linear_c, self.linear_max_iter, self.kmeans_n_init = linear_c, linear_max_iter, kmeans_n_init

    def _settings(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "max_train": self.max_train,
            "max_test": self.max_test,
            "map_points": self.map_points,
            "near_duplicate_threshold": self.near_threshold,
            "threshold": self.threshold,
        }

    def needs_training_data(self) -> str | None:
        """Always a reason: every part compares test embeddings with training embeddings."""
        return (
            "its kNN retrieval, linear probe and train/test duplicates compare test images with "
            "training images, and there are none"
        )

    def _train_embeddings(self, ctx: ProbeContext) -> tuple[torch.Tensor, Predictions]:
        """Sorted training positions of the sample and the model's outputs on them."""
        y = ctx.split.train_y
        n = len(y)
        pos = torch.arange(n) if not self.max_train or self.max_train >= n else None
        if pos is None:
            pos = stratified_sample(y, int(self.max_train or n), seed=ctx.sample_seed)
        with ctx.track("representation: training embeddings", 1) as advance:
            train = Predictions.compute(
                ctx.model,
                ctx.split.train_x[pos],
                y[pos],
                ctx.split.train_index[pos],
                batch_size=ctx.forward_batch,
                device=ctx.device,
            )
            advance(1)
        return pos, train

    def run(self, ctx: ProbeContext) -> ProbeResult:
        p = ctx.predictions
        res = ProbeResult()
        res.data["settings"] = self._settings()
        if p.embeddings.ndim != 2 or p.embeddings.shape[1] == 0:
            res.warnings.append(
                "The model has no features() (its embeddings have width 0), so there is no "
                "representation to measure: the representation probe was skipped."
            )
            return res
        if len(ctx.split.train_y) < 2 or len(p.labels) == 0:
            res.warnings.append(
                "The representation probe needs at least 2 training and 1 test image; skipped."
            )
            return res
        names = list(ctx.info.class_names)
        num_classes = len(names)
        train_pos, train = self._train_embeddings(ctx)
        n_train, n_test = len(train_pos), len(p.labels)
        samples: dict[str, int] = {"train": n_train, "test": n_test}
        res.data["samples"] = samples

        # Nearest training images of every test image, once; everything below reads them.
        width = max(self.k, self.gallery_neighbours)
        sim, nn_idx = cosine_topk(p.embeddings.to(ctx.device), train.embeddings.to(ctx.device), width)
        sim, nn_idx = sim.cpu(), nn_idx.cpu()
        k = min(self.k, nn_idx.shape[1])
        if k < self.k:
            res.warnings.append(
                f"only {n_train} training images were embedded, so k = {k} instead of {self.k}."
            )
        nn_labels = train.labels[nn_idx]
        nn_train_pos = train_pos[nn_idx]

        # kNN classification and the linear probe, training sample -> every test image.
        knn_pred = knn_vote(nn_labels[:, :k], num_classes)
        knn_acc = float((knn_pred == p.labels).float().mean())
        model_acc = float(p.correct.float().mean())
        res.metrics.update(knn_accuracy=knn_acc, knn_k=k, n_train_sample=n_train, n_test=n_test)
        lin = None
        try:
            lin = linear_probe(
                train.embeddings,
                train.labels,
                p.embeddings,
                p.labels,
                c=self.linear_c,
                max_iter=self.linear_max_iter,
            )
            res.metrics.update(
                linear_probe_accuracy=lin.accuracy, linear_probe_train_accuracy=lin.train_accuracy
            )
            if not lin.converged:
                res.warnings.append(
                    f"The linear probe's solver (lbfgs) did not converge in {self.linear_max_iter} "
                    "iterations; its accuracy may be a little low (raise linear_max_iter)."
                )
        except ValueError as e:
            res.warnings.append(f"linear probe skipped: {e}")
        present.classification_summary(res, knn_acc, k, lin, model_acc, n_train, n_test)

        # Failures among their neighbours.
        cases = ctx.offer("failures", FailureCases) or failure_cases(p, self.threshold, 16)
        records = failure_records(
            cases.errors,
            p.index,
            p.labels,
            p.preds,
            p.confidence,
            nn_labels[:, :k],
            sim[:, :k],
            ctx.split.train_index[nn_train_pos[:, :k]],
        )
        confident = set(cases.high_confidence)
        conf_records = [r for r in records if r["position"] in confident]
        present.failure_section(res, names, records, shares(records), shares(conf_records), cases, k, n_train)
        present.failure_galleries(
            res,
            ctx,
            names,
            conf_records or records,
            sim,
            nn_train_pos,
            nn_labels,
            self.gallery_neighbours,
            self.n_gallery,
            self.n_examples,
            bool(conf_records),
        )

        # k-means on a test sample.
        km_pos = ctx.sample(self.max_test, "representation")
        if len(km_pos) >= 2:
            report = cluster_report(
                p.embeddings[km_pos], p.labels[km_pos], num_classes, seed=ctx.seed, n_init=self.kmeans_n_init
            )
            samples["kmeans"] = report.n
            present.cluster_section(res, names, report)

        # The map: t-SNE of a test sample, with the pairs the model confuses most.
        map_pos = ctx.sample(self.map_points, "representation_map") if self.map_points else None
        if map_pos is not None and len(map_pos) >= 4:
            coords = tsne_map(p.embeddings[map_pos], seed=ctx.seed)
            cm = confusion_counts(p.labels, p.preds, num_classes)
            pairs = top_confused_pairs(cm, self.n_pairs)
            samples["map"] = len(map_pos)
            present.map_section(res, names, coords, map_pos, p, pairs)

        # Train/test duplicates: exact on the whole sets, near in feature space on the sample.
        exact = exact_duplicates(ctx.split.train_x, ctx.split.test_x, release_pages)
        near = near_duplicates(sim[:, 0], nn_train_pos[:, 0], self.near_threshold)
        duplicate_section(res, ctx, names, exact, near, self.near_threshold, n_train)
        return res
