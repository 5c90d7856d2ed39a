"""k-means via faiss and cluster-stratified sampling helpers (budget allocation, Cherry's band picks)."""
from __future__ import annotations

import numpy as np


def kmeans(X: np.ndarray, k: int, *, seed: int = 0, niter: int = 20, nredo: int = 1, gpu: bool | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """``(centroids [k, d], assignment [N])`` with ``faiss.Kmeans`` (GPU when available and allowed).

    ``k`` is capped at N. Non-finite rows are assigned to their nearest centroid after zero-filling.
    ``nredo`` restarts keep the lowest-objective run (random init can merge two true clusters).
    """
    import faiss

    X = np.ascontiguousarray(np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0), dtype=np.float32)
    k = max(1, min(int(k), X.shape[0]))
    use_gpu = faiss.get_num_gpus() > 0 if gpu is None else gpu
    km = faiss.Kmeans(X.shape[1], k, niter=niter, nredo=nredo, seed=seed, gpu=use_gpu, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=1 << 30)
    km.train(X)
    _, assign = km.index.search(X, 1)
    return km.centroids.copy(), assign[:, 0].astype(np.int64)


def auto_clusters(n: int) -> int:
    """The default cluster count over ``n`` rows: round(sqrt(n / 2)), at least 1."""
    return max(1, int(round(np.sqrt(n / 2))))


def allocate_proportional(sizes: np.ndarray | list[int], budget: int) -> np.ndarray:
    """Split ``budget`` over clusters in proportion to ``sizes`` (largest remainder, Hamilton).

    Exact integer arithmetic; sums to ``min(budget, sum(sizes))``; no cluster exceeds its size
    (``total·s_i/S <= s_i`` since ``total <= S``); remainder ties go to the lower cluster index.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    S = int(sizes.sum())
    total = min(int(budget), S)
    if total <= 0:
        return np.zeros_like(sizes)
    quota, rem = np.divmod(total * sizes, S)
    left = total - int(quota.sum())
    quota[np.lexsort((np.arange(len(sizes)), -rem))[:left]] += 1
    return quota


def cherry_cluster_picks(scores: np.ndarray, clusters: np.ndarray, n: int = 10, low: float = 25,
                         high: float = 75) -> np.ndarray:
    """Cherry's pre-experience picks: per cluster, rows whose score lies in the [low, high]
    percentile band of that cluster (numpy linear percentiles, inclusive), then every
    ``⌊m/n⌋``-th of those ``m`` rows in dataset order, at most ``n``. Clusters with fewer than
    ``n`` rows, and bands with fewer than ``n`` rows, are taken whole. Returns sorted row indices.
    """
    scores = np.asarray(scores, dtype=np.float64)
    picks = []
    for c in np.unique(clusters):
        members = np.flatnonzero(clusters == c)
        if len(members) < n:
            picks.append(members)
            continue
        s = scores[members]
        lo, hi = np.nanpercentile(s, low), np.nanpercentile(s, high)
        band = members[(s >= lo) & (s <= hi)]
        picks.append(band if len(band) < n else band[:: len(band) // n][:n])
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)
