"""The baselines every selection is shown beside: a seeded random subset and the longest responses,
and how a subset compares with them (lengths, scores, overlap, coverage of the embedding space).

Both baselines draw from the *eligible* rows (rows without an error reason), at the size the method
actually selected, so every arm in a report has the same number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from selection.coverage import entropy, nearest_selected
from selection.kmeans import auto_clusters, kmeans
from selection.topk import best, top_rows

BASELINES = ("random", "longest")


def random_keys(positions: np.ndarray, seed: int) -> np.ndarray:
    """A seeded pseudo-random key in [0, 2**53) per row position (splitmix64 of position and seed,
    exact in float64): each row's draw depends on nothing but its own position, so a stream of
    shards draws the same subset as the whole pool at once."""
    with np.errstate(over="ignore"):
        z = np.asarray(positions, dtype=np.uint64) + np.uint64((int(seed) * 0x9E3779B97F4A7C15 + 1) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64)


def random_subset(eligible: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``min(k, #eligible)`` eligible positions drawn without replacement with ``seed``, sorted: the
    eligible rows with the largest :func:`random_keys` (a uniform draw that streams; see
    ``jobs.merge``). The same (eligible, k, seed) always gives the same subset."""
    idx = np.flatnonzero(np.asarray(eligible, dtype=bool))
    if k <= 0 or len(idx) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(idx[best(random_keys(idx, seed), idx, int(k))]).astype(np.int64)


def longest_subset(lengths: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` eligible rows with the most response tokens, longest first (ties: lower position)."""
    idx = np.flatnonzero(np.asarray(eligible, dtype=bool))
    return top_rows(np.asarray(lengths), idx, k).astype(np.int64)


def baseline_subset(kind: str, lengths: np.ndarray, eligible: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``random`` (sorted positions) or ``longest`` (longest first)."""
    if kind == "random":
        return random_subset(eligible, k, seed)
    if kind == "longest":
        return longest_subset(lengths, eligible, k)
    raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")


def overlap(a: np.ndarray, b: np.ndarray) -> float | None:
    """|a ∩ b| / |a| (None for an empty ``a``)."""
    a = np.unique(np.asarray(a, dtype=np.int64))
    return float(np.isin(a, np.asarray(b, dtype=np.int64)).mean()) if len(a) else None


def _summary(x: np.ndarray) -> dict[str, float | None]:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return {"mean": None, "median": None, "p10": None, "p90": None}
    q = np.percentile(x, [10, 50, 90])
    return {"mean": float(x.mean()), "median": float(q[1]), "p10": float(q[0]), "p90": float(q[2])}


def coverage(emb: np.ndarray, eligible: np.ndarray, subset: np.ndarray) -> dict[str, float | None]:
    """k-center view of a subset: the covering radius (largest distance from an eligible row to its
    nearest subset row) and the mean of those distances."""
    idx = np.flatnonzero(np.asarray(eligible, dtype=bool))
    if not len(subset) or not len(idx):
        return {"kcenter_radius": None, "mean_nearest": None}
    subset = np.intersect1d(np.asarray(subset, dtype=np.int64), idx)  # sorted, eligible only
    if not len(subset):
        return {"kcenter_radius": None, "mean_nearest": None}
    X = np.ascontiguousarray(emb[idx], dtype=np.float32)
    d = nearest_selected(X, np.searchsorted(idx, subset))
    return {"kcenter_radius": float(d.max()), "mean_nearest": float(d.mean())}


def cluster_stats(clusters: np.ndarray, subset: np.ndarray) -> dict[str, float | int | None]:
    """Entropy of the subset's cluster labels, normalised by log(#clusters) (1 = spread evenly over
    every cluster), and how many clusters it touches."""
    c = int(clusters.max()) + 1 if len(clusters) else 0
    labels = np.asarray(clusters, dtype=np.int64)[np.asarray(subset, dtype=np.int64)]
    labels = labels[labels >= 0]
    if c <= 1 or not len(labels):
        return {"cluster_entropy": None, "clusters_covered": int(len(np.unique(labels)))}
    return {
        "cluster_entropy": entropy(labels, c) / float(np.log(c)),
        "clusters_covered": int(len(np.unique(labels))),
    }


def coverage_clusters(emb: np.ndarray, eligible: np.ndarray, seed: int) -> np.ndarray:
    """k-means labels (``auto_clusters`` of the eligible rows) for the spread figures; -1 elsewhere."""
    labels = np.full(len(emb), -1, dtype=np.int64)
    idx = np.flatnonzero(np.asarray(eligible, dtype=bool))
    if len(idx):
        labels[idx] = kmeans(np.asarray(emb[idx], dtype=np.float32), auto_clusters(len(idx)), seed=seed)[1]
    return labels


@dataclass
class Arm:
    """A subset's positions with its rows' response lengths and scores (aligned with ``pos``)."""

    pos: np.ndarray
    length: np.ndarray
    score: np.ndarray | None = None


def arm_figures(arms: dict[str, Arm], longest: str = "longest") -> dict[str, dict[str, Any]]:
    """Per arm: rows, response-length and score summaries, and overlap with the ``longest`` arm."""
    out: dict[str, dict[str, Any]] = {}
    for name, arm in arms.items():
        row: dict[str, Any] = {"rows": int(len(arm.pos)), "response_tokens": _summary(arm.length)}
        if arm.score is not None:
            row["score"] = _summary(arm.score)
        if longest in arms:
            row["overlap_with_longest"] = overlap(arm.pos, arms[longest].pos)
        out[name] = row
    return out


def compare_arms(
    arms: dict[str, np.ndarray],
    lengths: np.ndarray,
    eligible: np.ndarray,
    score: np.ndarray | None = None,
    emb: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    longest: str = "longest",
) -> dict[str, dict[str, Any]]:
    """Per arm (name → selected positions): :func:`arm_figures`, and — given embeddings / cluster
    labels — coverage and cluster spread."""
    picked = {name: np.asarray(pos, dtype=np.int64) for name, pos in arms.items()}
    out = arm_figures({name: Arm(pos, lengths[pos], None if score is None else score[pos])
                       for name, pos in picked.items()}, longest)
    for name, pos in picked.items():
        if emb is not None:
            out[name].update(coverage(emb, eligible, pos))
        if clusters is not None:
            out[name].update(cluster_stats(clusters, pos))
    return out
