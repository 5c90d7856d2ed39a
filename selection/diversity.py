"""Diversity filters over a ranked list: DEITA's threshold filter and RECOST-style sliding windows.

Both work on cosine similarity of L2-normalised embeddings, in blocks (no N×N matrix).
"""
from __future__ import annotations

import numpy as np

from selection.kmeans import allocate_proportional


def normalise(X: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float32; zero / non-finite rows become zero vectors."""
    X = np.nan_to_num(np.asarray(X, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norm, out=np.zeros_like(X), where=norm > 0)


def threshold_diversity(order: np.ndarray, X: np.ndarray, k: int, tau: float = 0.9, block: int = 1024,
                        admitted: np.ndarray | list[int] | None = None) -> np.ndarray:
    """Walk ``order`` (best first) and admit a row only if its max cosine similarity to the rows
    admitted so far is ``<= tau``; stop at ``k`` newly admitted. Returns them in admit order.

    ``admitted`` optionally seeds the set that candidates are compared with. Each block of
    candidates is compared with the admitted set in one matrix product; candidates inside a block
    are then checked against each other with the block's own Gram matrix.
    """
    E = normalise(X)
    A = E[np.asarray(admitted if admitted is not None else [], dtype=np.int64)]
    admitted = []
    order = np.asarray(order, dtype=np.int64)
    for s in range(0, len(order), block):
        if len(admitted) >= k:
            break
        cand = order[s:s + block]
        Eb = E[cand]
        ok = (Eb @ A.T).max(axis=1) <= tau if len(A) else np.ones(len(cand), dtype=bool)
        G = Eb @ Eb.T
        taken: list[int] = []
        for i in np.flatnonzero(ok):
            if taken and G[i, taken].max() > tau:
                continue
            taken.append(int(i))
            if len(admitted) + len(taken) >= k:
                break
        admitted += cand[taken].tolist()
        A = np.vstack([A, Eb[taken]])
    return np.array(admitted[:k], dtype=np.int64)


def _window_walk(members: np.ndarray, E: np.ndarray, quota: int, window: int, tau: float) -> list[int]:
    """Within one cluster: repeatedly look at the next ``window`` live candidates (rank order),
    drop those too similar (> tau) to something chosen, take the one farthest from the chosen set."""
    picked: list[int] = []
    live = list(members)
    sel = np.zeros((0, E.shape[1]), dtype=np.float32)
    while len(picked) < quota and live:
        win = np.array(live[:window])
        sim = (E[win] @ sel.T).max(axis=1) if len(sel) else np.full(len(win), -1.0)
        too_close = set(win[sim > tau].tolist())
        live = [i for i in live if i not in too_close]
        keep = sim <= tau
        if not keep.any():
            continue
        best = int(win[keep][np.argmin(sim[keep])])  # farthest = least similar; ties -> better rank
        picked.append(best)
        live.remove(best)
        sel = np.vstack([sel, E[best][None]])
    return picked


def sliding_window_diverse(order: np.ndarray, X: np.ndarray, k: int, window: int = 4, tau: float = 0.95,
                           clusters: np.ndarray | None = None) -> np.ndarray:
    """RECOST's diversity-consistent sampling (Winnow's reconstruction, METHODS.md §6.5).

    The budget ``k`` is allocated to clusters in proportion to their share of ``order`` (largest
    remainder), so the selection's cluster mix mirrors the pool's. Within each cluster a window of
    ``window`` candidates slides down the ranking: the candidate farthest (cosine) from the rows
    already chosen in that cluster is taken, candidates more similar than ``tau`` are skipped.
    Quota a cluster cannot fill goes to the best remaining rows of any cluster that pass ``tau``
    against the whole selection. Returns selected indices, best fused rank first.
    """
    E = normalise(X)
    order = np.asarray(order, dtype=np.int64)
    k = min(int(k), len(order))
    labels = np.zeros(len(E), dtype=np.int64) if clusters is None else np.asarray(clusters)
    ids, inverse = np.unique(labels[order], return_inverse=True)
    quota = allocate_proportional(np.bincount(inverse, minlength=len(ids)), k)
    chosen: list[int] = []
    for c in range(len(ids)):
        chosen += _window_walk(order[inverse == c], E, int(quota[c]), window, tau)
    for strict in (True, False):  # unfilled quota: best remaining rows passing tau, then by rank
        if len(chosen) >= k:
            break
        rest = order[~np.isin(order, chosen)]
        extra = threshold_diversity(rest, X, k - len(chosen), tau, admitted=chosen) if strict \
            else rest[: k - len(chosen)]
        chosen += extra.tolist()
    rank = np.empty(len(E), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return np.array(sorted(chosen, key=lambda i: rank[i]), dtype=np.int64)
