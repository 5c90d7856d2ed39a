"""Rank fusion of several scores (RECOST re-ranking): weighted rank sum or reciprocal-rank fusion."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def ranks(score: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """0-based rank of every row (0 = best); ties by lower index; NaN ranks last."""
    s = np.asarray(score, dtype=np.float64)
    key = np.where(np.isnan(s), np.inf, -s if higher_is_better else s)
    r = np.empty(len(s), dtype=np.int64)
    r[np.lexsort((np.arange(len(s)), key))] = np.arange(len(s))
    return r


def fuse_ranks(score_arrays: Sequence[np.ndarray], weights: Sequence[float] | None = None,
               method: str = "weighted", higher_is_better: Sequence[bool] | None = None,
               rrf_k: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """Fuse per-score ranks into one ordering. Returns ``(order best-first, fused value)``.

    ``weighted``: fused = Σ w_i·rank_i (lower is better). ``rrf``: fused = Σ w_i / (rrf_k + rank_i + 1)
    (higher is better). Ties keep the lower index, so the order is deterministic.
    """
    m = len(score_arrays)
    w = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64)
    hib = [True] * m if higher_is_better is None else list(higher_is_better)
    if len(w) != m or len(hib) != m:
        raise ValueError("one weight and one direction per score array")
    R = np.stack([ranks(s, h) for s, h in zip(score_arrays, hib)]).astype(np.float64)
    if method == "weighted":
        fused = (w[:, None] * R).sum(axis=0)
        order = np.lexsort((np.arange(R.shape[1]), fused))
    elif method == "rrf":
        fused = (w[:, None] / (rrf_k + R + 1)).sum(axis=0)
        order = np.lexsort((np.arange(R.shape[1]), -fused))
    else:
        raise ValueError(f"unknown fusion method {method!r}; choose weighted or rrf")
    return order, fused
