"""Metrics, sentences, tables and figures of the representation probe, one section each.

Every number carries its sample size; a value that is undefined (no failures, no
duplicates) is left out rather than written as a number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from stresslab.data.base import to_float
from stresslab.probes.base import ProbeContext, ProbeResult, Table
from stresslab.probes.failures import FailureCases
from stresslab.probes.predictions import Predictions
from stresslab.probes.representation.clusters import ClusterReport, majority_labels
from stresslab.probes.representation.embedding_map import map_figure
from stresslab.probes.representation.failure_neighbours import NeighbourShares
from stresslab.probes.representation.figures import NeighbourRow, neighbour_gallery
from stresslab.probes.representation.linear import LinearProbeResult
from stresslab.report.figures import heatmap_figure


def pct(x: float) -> str:
    """A share in [0, 1] as a percentage with one decimal."""
    return f"{100 * x:.1f}%"


def classification_summary(
    res: ProbeResult,
    knn_acc: float,
    k: int,
    lin: LinearProbeResult | None,
    model_acc: float,
    n_train: int,
    n_test: int,
) -> None:
    """One sentence: kNN and linear-probe accuracy next to the model's own, with sample sizes."""
    text = (
        f"On the {n_test} test images, kNN on the embeddings (k = {k}, cosine, against {n_train} "
        f"sampled training images) is right for {pct(knn_acc)}"
    )
    if lin is not None:
        text += f", a linear probe (logistic regression on standardized features) for {pct(lin.accuracy)}"
    res.summary.append(text + f"; the model itself for {pct(model_acc)}.")


def failure_section(
    res: ProbeResult,
    names: list[str],
    records: list[dict[str, Any]],
    all_shares: NeighbourShares | None,
    conf_shares: NeighbourShares | None,
    cases: FailureCases,
    k: int,
    n_train: int,
) -> None:
    """Metrics, summary and table of the failures' neighbour labels."""
    res.data["failures"] = records
    for prefix, s in (("errors", all_shares), ("confident_errors", conf_shares)):
        if s is None:
            continue
        res.metrics[f"{prefix}_n"] = s.n
        res.metrics[f"{prefix}_majority_pred_share"] = s.majority_pred
        res.metrics[f"{prefix}_majority_true_share"] = s.majority_true
        res.metrics[f"{prefix}_mean_neighbour_pred_share"] = s.mean_share_pred
    where = f"of the {k} nearest training images (of {n_train} sampled)"
    if conf_shares is not None:
        res.summary.append(
            f"In {pct(conf_shares.majority_pred)} of the {conf_shares.n} confident errors (confidence >= "
            f"{cases.threshold:g}) most {where} carry the predicted label, in "
            f"{pct(conf_shares.majority_true)} the true label: the features put these images among "
            "the class the model chose."
        )
    if all_shares is not None:
        res.summary.append(
            f"Over all {all_shares.n} errors: most neighbours carry the predicted label in "
            f"{pct(all_shares.majority_pred)}, the true label in {pct(all_shares.majority_true)}."
        )
    rows = [
        [
            r["index"],
            names[r["true"]],
            names[r["pred"]],
            r["confidence"],
            r["share_pred"],
            r["share_true"],
            ", ".join(names[c][:10] for c in r["neighbour_labels"]),
        ]
        for r in records[:50]
    ]
    res.tables.append(
        Table(
            f"Failures and the labels of their {k} nearest training images (cosine, {n_train} sampled)",
            ["test index", "true", "predicted", "confidence", "share predicted", "share true", "neighbours"],
            rows,
            caption=f"Most confident errors first; {len(records)} in all in results/representation.json.",
        )
    )


def _rows(
    ctx: ProbeContext,
    positions: list[int],
    titles: list[str],
    sim: Tensor,
    nn_train_pos: Tensor,
    nn_labels: Tensor,
    width: int,
) -> list[NeighbourRow]:
    p = ctx.predictions
    out = []
    for pos, title in zip(positions, titles, strict=True):
        tp = nn_train_pos[pos, :width]
        out.append(
            NeighbourRow(
                query=to_float(ctx.split.test_x[pos]),
                title=title,
                true=int(p.labels[pos]),
                pred=int(p.preds[pos]),
                neighbours=to_float(ctx.split.train_x[tp]),
                labels=nn_labels[pos, :width].tolist(),
                distances=(1.0 - sim[pos, :width]).tolist(),
            )
        )
    return out


def failure_galleries(
    res: ProbeResult,
    ctx: ProbeContext,
    names: list[str],
    records: list[dict[str, Any]],
    sim: Tensor,
    nn_train_pos: Tensor,
    nn_labels: Tensor,
    width: int,
    n_gallery: int,
    n_examples: int,
    confident: bool,
) -> None:
    """A gallery of failures with their neighbours, and one of a few sampled test images."""
    shown = records[:n_gallery]
    if shown:
        titles = [
            f"#{r['index']} {names[r['true']][:9]}\n→ {names[r['pred']][:9]} {r['confidence']:.2f}"
            for r in shown
        ]
        rows = _rows(ctx, [r["position"] for r in shown], titles, sim, nn_train_pos, nn_labels, width)
        kind = "confident errors" if confident else "errors"
        res.figures["failure_neighbours"] = neighbour_gallery(
            rows, names, f"{kind.capitalize()} (left) and their nearest training images (cosine distance d)"
        )
        res.captions["failure_neighbours"] = (
            f"The {len(shown)} most confident {kind}, each with its {width} nearest training images "
            "(green: the true class, red: the predicted class)."
        )
    if n_examples:
        pos = ctx.sample(n_examples, "representation_examples").tolist()
        p = ctx.predictions
        titles = [f"#{int(p.index[i])} {names[int(p.labels[i])][:12]}" for i in pos]
        rows = _rows(ctx, pos, titles, sim, nn_train_pos, nn_labels, width)
        res.figures["retrieval_examples"] = neighbour_gallery(
            rows, names, "Sampled test images (left) and their nearest training images"
        )
        res.captions["retrieval_examples"] = (
            f"{len(pos)} test images from a seeded class-stratified sample and their {width} nearest "
            "training images: do neighbours in feature space look alike?"
        )


def cluster_section(res: ProbeResult, names: list[str], rep: ClusterReport) -> None:
    """k-means metrics, the cluster x class table and its heatmap."""
    res.metrics.update(kmeans_n=rep.n, kmeans_purity=rep.purity, kmeans_nmi=rep.nmi, kmeans_ari=rep.ari)
    if rep.silhouette is not None:
        res.metrics["kmeans_silhouette"] = rep.silhouette
    sil = f", silhouette {rep.silhouette:.3f}" if rep.silhouette is not None else ""
    res.summary.append(
        f"k-means with {rep.n_clusters} clusters on {rep.n} sampled test embeddings (L2-normalized): "
        f"purity {rep.purity:.3f}, NMI {rep.nmi:.3f}, ARI {rep.ari:.3f}{sil}."
    )
    major = majority_labels(rep.table)
    row_names = [f"cluster {c} ({names[m][:12]})" for c, m in enumerate(major)]
    res.tables.append(
        Table(
            f"k-means clusters x classes ({rep.n} sampled test images)",
            ["cluster (majority class)", "size", *names],
            [[rn, int(sum(row)), *row] for rn, row in zip(row_names, rep.table, strict=True)],
        )
    )
    table = np.asarray(rep.table, dtype=float)
    share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    res.figures["kmeans_clusters"] = heatmap_figure(
        share,
        row_names,
        [n[:12] for n in names],
        title="Share of each cluster by class",
        xlabel="class",
        ylabel="k-means cluster",
        vmin=0.0,
        vmax=1.0,
    )
    res.captions["kmeans_clusters"] = (
        f"k-means (k = {rep.n_clusters}, seeded) on {rep.n} sampled test embeddings; each row sums to 1. "
        "A cluster split between classes shows classes the features do not separate."
    )
    res.data["kmeans"] = {"table": rep.table, "n": rep.n}


def map_section(
    res: ProbeResult,
    names: list[str],
    coords: np.ndarray,
    positions: Tensor,
    p: Predictions,
    pairs: list[tuple[int, int]],
) -> None:
    """The t-SNE figure and its coordinates (with test indices) in the data."""
    labels, preds = p.labels[positions].numpy(), p.preds[positions].numpy()
    n = len(positions)
    res.figures["embedding_map"] = map_figure(
        coords, labels, preds, names, pairs, title=f"t-SNE of {n} sampled test embeddings"
    )
    res.captions["embedding_map"] = (
        f"t-SNE (seeded) of {n} test embeddings from a class-stratified sample, coloured by true class; "
        "crosses are errors, larger marks the errors of the most confused pairs."
    )
    res.data["map"] = [
        {"index": int(p.index[i]), "x": float(x), "y": float(y)}
        for i, (x, y) in zip(positions.tolist(), coords.tolist(), strict=True)
    ]
