"""Facility-location selection: f(S) = Σ_i max_{j∈S} sim(i, j), maximised greedily.

``facility_location`` keeps only each point's ``knn`` most similar neighbours (a sparse graph built
with faiss; exact flat search up to ``flat_max`` points, IVF beyond) and runs lazy greedy on it, so N
in the millions fits in O(N·knn) memory. ``facility_location_dense`` is the exact N×N version
(Superfiltering.D's submodlib setup, small N only); with ``knn >= N-1`` both pick the same rows.
The similarity kernel is ``max(cos, 0)`` on L2-normalised rows.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from selection.diversity import normalise


@dataclass
class FLResult:
    order: np.ndarray   # picks in greedy order
    gains: np.ndarray   # marginal gain of each pick


def knn_graph(E: np.ndarray, knn: int, flat_max: int = 50_000, nprobe: int = 16
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, sims)`` of the kNN similarity graph with self-loops of similarity 1."""
    import faiss

    n, d = E.shape
    kk = min(knn + 1, n)
    if n <= flat_max:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(E[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)])
        index.nprobe = nprobe
    index.add(E)
    sims, nbrs = index.search(E, kk)
    rows = np.repeat(np.arange(n), kk)
    cols, sims = nbrs.ravel(), sims.ravel()
    keep = (cols >= 0) & (cols != rows)
    rows = np.concatenate([rows[keep], np.arange(n)])
    cols = np.concatenate([cols[keep], np.arange(n)])
    vals = np.concatenate([np.clip(sims[keep], 0.0, None), np.ones(n, dtype=np.float32)])
    return rows, cols, vals.astype(np.float64)


def facility_location(X: np.ndarray, k: int, *, knn: int = 32, flat_max: int = 50_000) -> FLResult:
    """Lazy greedy on the sparse kNN graph; ties go to the lower index."""
    E = normalise(X)
    n = len(E)
    rows, cols, vals = knn_graph(E, knn, flat_max)
    by_col = np.argsort(cols, kind="stable")  # reverse adjacency: who has j as a neighbour
    rrows, rvals = rows[by_col], vals[by_col]
    ptr = np.searchsorted(cols[by_col], np.arange(n + 1))
    cur = np.zeros(n)

    def gain(j: int) -> float:
        s, e = ptr[j], ptr[j + 1]
        return float(np.maximum(rvals[s:e] - cur[rrows[s:e]], 0.0).sum())

    heap = [(-gain(j), j) for j in range(n)]
    heapq.heapify(heap)
    order, gains = [], []
    chosen = np.zeros(n, dtype=bool)
    while heap and len(order) < min(k, n):
        _, j = heapq.heappop(heap)
        if chosen[j]:
            continue
        g = gain(j)
        if heap and (g < -heap[0][0] or (g == -heap[0][0] and j > heap[0][1])):
            heapq.heappush(heap, (-g, j))  # stale bound: re-queue with the fresh gain
            continue
        order.append(j)
        gains.append(g)
        chosen[j] = True
        s, e = ptr[j], ptr[j + 1]
        np.maximum.at(cur, rrows[s:e], rvals[s:e])
    return FLResult(np.array(order, dtype=np.int64), np.array(gains))


def facility_location_dense(X: np.ndarray, k: int) -> FLResult:
    """Exact greedy on the dense N×N kernel (small N only)."""
    E = normalise(X).astype(np.float64)
    S = np.clip(E @ E.T, 0.0, None)
    np.fill_diagonal(S, 1.0)
    cur = np.zeros(len(E))
    order, gains = [], []
    for _ in range(min(k, len(E))):
        g = np.maximum(S - cur[:, None], 0.0).sum(axis=0)
        g[order] = -1.0
        j = int(np.argmax(g))
        order.append(j)
        gains.append(float(g[j]))
        cur = np.maximum(cur, S[:, j])
    return FLResult(np.array(order, dtype=np.int64), np.array(gains))
