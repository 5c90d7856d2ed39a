"""How well a selection covers the pool: covering radius, nearest-selected distances, cluster mix."""
from __future__ import annotations

from typing import Any

import numpy as np


def nearest_selected(X: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Euclidean distance from every row to its nearest selected row (faiss exact search)."""
    import faiss

    X = np.ascontiguousarray(np.nan_to_num(X, nan=0.0), dtype=np.float32)
    index = faiss.IndexFlatL2(X.shape[1])
    index.add(X[np.asarray(selected, dtype=np.int64)])
    d2, _ = index.search(X, 1)
    return np.sqrt(np.clip(d2[:, 0], 0.0, None))


def entropy(labels: np.ndarray, n_clusters: int) -> float:
    """Shannon entropy (nats) of the label distribution."""
    p = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def coverage_report(X: np.ndarray, selected: np.ndarray, clusters: np.ndarray | None = None) -> dict[str, Any]:
    """Covering radius (max distance to the nearest selected row), mean/median nearest-selected
    distance, and, given cluster labels, the entropy and cluster shares of selection vs pool."""
    selected = np.asarray(selected, dtype=np.int64)
    if len(selected) == 0:
        raise ValueError("coverage of an empty selection is undefined")
    d = nearest_selected(X, selected)
    out: dict[str, Any] = {"n_pool": int(len(X)), "n_selected": int(len(selected)),
                           "covering_radius": float(d.max()), "mean_nearest": float(d.mean()),
                           "median_nearest": float(np.median(d))}
    if clusters is not None:
        clusters = np.asarray(clusters, dtype=np.int64)
        c = int(clusters.max()) + 1
        pool_share = np.bincount(clusters, minlength=c) / len(clusters)
        sel_share = np.bincount(clusters[selected], minlength=c) / len(selected)
        out.update({"cluster_entropy_pool": entropy(clusters, c),
                    "cluster_entropy_selected": entropy(clusters[selected], c),
                    "cluster_share_l1": float(np.abs(pool_share - sel_share).sum()),
                    "clusters_covered": int((np.bincount(clusters[selected], minlength=c) > 0).sum()),
                    "clusters": c})
    return out
