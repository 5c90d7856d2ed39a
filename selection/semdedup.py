"""Semantic near-duplicate removal (SemDeDup, Abbas et al. 2023): cluster the embeddings with
k-means, then inside each cluster drop every row whose cosine similarity to an already *kept* row
of that cluster is at least ``threshold``.

Which row of a group is kept is fixed: rows are visited in input order, so the earliest row of a
group is kept and every later near-copy points at it (``duplicate_of``). This differs on purpose from
the reference implementation, which orders each cluster by distance to its centroid and drops a row
similar to *any* earlier row (even one that was itself dropped): here a chain a≈b≈c with a≉c keeps a
and c, and the row a user sees first in their file is the one kept.

Near-copies that k-means puts in different clusters are not compared (SemDeDup's trade-off: the
work is Σ mᵢ² over cluster sizes mᵢ instead of N²); more clusters is faster and misses more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selection.kmeans import kmeans

DROP_DUPLICATE = "semantic_duplicate"  # the outcome of a dropped near-copy in any job's scores.parquet
BLOCK_ELEMENTS = 1 << 24  # similarity entries computed at once (64 MB of float32)


@dataclass(frozen=True)
class DedupParams:
    threshold: float = 0.95  # cosine similarity at or above which a row is a near-copy
    clusters: int | None = None  # None: ceil(sqrt(N)) over the eligible rows
    center: bool = True  # subtract the pool's mean embedding before the cosine (see unit_rows)
    seed: int = 0
    niter: int = 20

    def check(self) -> None:
        if not (0.0 < float(self.threshold) <= 1.0):
            raise ValueError(f"dedup.threshold must be in (0, 1], got {self.threshold}")
        if self.clusters is not None and int(self.clusters) < 1:
            raise ValueError(f"dedup.clusters must be >= 1 or auto, got {self.clusters}")


@dataclass
class DedupResult:
    duplicate_of: np.ndarray  # [N] position of the kept row this row copies; -1: not a near-copy
    similarity: np.ndarray  # [N] cosine to that kept row (NaN where duplicate_of == -1)
    cluster: np.ndarray  # [N] k-means cluster; -1 for rows that took no part (errors, zero vectors)

    @property
    def removed(self) -> np.ndarray:
        return self.duplicate_of >= 0


def unit_rows(E: np.ndarray, center: bool) -> np.ndarray:
    """Rows scaled to unit length, after subtracting their mean when ``center`` (mean-pooled hidden
    states of a causal LM share a large common direction, so raw cosines of unrelated texts sit near
    1; centring removes it). Zero rows stay zero."""
    X = np.nan_to_num(np.asarray(E, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if center and len(X):
        X = X - X.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norm, out=np.zeros_like(X), where=norm > 0)


def similar_pairs(X: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of rows of ``X`` (unit rows) with cosine ≥ ``threshold``, sorted by
    (i, j): ``(i, j, sim)``. Computed in blocks of rows, never the whole matrix."""
    m = len(X)
    block = max(1, BLOCK_ELEMENTS // max(m, 1))
    out_i, out_j, out_s = [], [], []
    for b in range(0, m, block):
        S = X[b : b + block] @ X[b:].T  # rows b.., columns b..
        i, j = np.nonzero(S >= threshold)
        keep = j > i  # column offset equals row offset: j > i is strictly after row b + i
        out_i.append(i[keep] + b)
        out_j.append(j[keep] + b)
        out_s.append(S[i[keep], j[keep]])
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    i, j, s = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)
    order = np.lexsort((j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), s[order].astype(np.float32)


def greedy_keep(m: int, i: np.ndarray, j: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Visit rows 0..m-1 in order: a row not yet dropped is kept and drops every later row paired
    with it. Returns (duplicate_of [m] local index or -1, similarity [m])."""
    dup = np.full(m, -1, dtype=np.int64)
    sim = np.full(m, np.nan, dtype=np.float32)
    if not len(i):
        return dup, sim
    starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])
    ends = np.r_[starts[1:], len(i)]
    for a, b in zip(starts, ends):  # one step per row that has a later near-copy
        row = i[a]
        if dup[row] >= 0:
            continue  # a dropped row drops nothing
        js = j[a:b]
        fresh = dup[js] < 0
        dup[js[fresh]] = row
        sim[js[fresh]] = s[a:b][fresh]
    return dup, sim


def semdedup(E: np.ndarray, eligible: np.ndarray, p: DedupParams) -> DedupResult:
    """Near-duplicates among the ``eligible`` rows of ``E`` (row index = input position)."""
    p.check()
    n = len(E)
    E = np.nan_to_num(np.asarray(E, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    idx = np.flatnonzero(np.asarray(eligible, dtype=bool) & (np.abs(E).sum(axis=1) > 0))
    dup = np.full(n, -1, dtype=np.int64)
    sim = np.full(n, np.nan, dtype=np.float32)
    cluster = np.full(n, -1, dtype=np.int64)
    if not len(idx):
        return DedupResult(dup, sim, cluster)
    X = unit_rows(E[idx], p.center)  # centred on the rows that take part (errors are zero vectors)
    k = int(p.clusters) if p.clusters else int(np.ceil(np.sqrt(len(idx))))
    _, assign = kmeans(X, k, seed=p.seed, niter=p.niter)
    cluster[idx] = assign
    for c in np.unique(assign):
        local = np.flatnonzero(assign == c)
        members = idx[local]  # ascending input position
        li, lj, ls = similar_pairs(X[local], float(p.threshold))
        d, s = greedy_keep(len(members), li, lj, ls)
        hit = d >= 0
        dup[members[hit]] = members[d[hit]]
        sim[members[hit]] = s[hit]
    return DedupResult(dup, sim, cluster)
