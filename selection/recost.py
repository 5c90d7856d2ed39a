"""RECOST selection (Winnow's reconstruction, METHODS.md §6): drop rows IFD already rejects, fuse
the IFD rank with the relative-predictive-entropy rank, then diversity-consistent sampling.

Pure numpy (+ faiss k-means); no Ray, no files.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from records.tables import label_counts, labels

from selection.diversity import normalise, sliding_window_diverse
from selection.fusion import fuse_ranks
from selection.kmeans import auto_clusters, kmeans
from selection.topk import DROP_ABOVE, DROP_ERROR, DROP_NAN, KEPT

NOT_SELECTED = "below_budget"
NEAR_DUPLICATE = "near_duplicate"
RPE_FORMS = ("diff", "ratio")


@dataclass(frozen=True)
class RecostParams:
    """Knobs of the RECOST selection (defaults: METHODS.md §6)."""

    max_score: float | None = 1.0      # IFD above this is dropped first (Cherry)
    max_inclusive: bool = True
    rpe: str = "diff"                  # diff: H(A|Q) − H(A|K,Q), higher better; ratio: lower better
    weight: float = 0.1                # weight of the IFD rank; the RPE rank gets 1 − weight (see conf)
    fusion: str = "weighted"           # weighted | rrf
    rrf_k: float = 60.0
    window: int = 4
    tau: float = 0.95
    n_clusters: int | None = None      # None: sqrt(N / 2) over the eligible rows
    kmeans_redo: int = 3               # k-means restarts (best objective kept)
    seed: int = 0

    def check(self) -> None:
        if self.rpe not in RPE_FORMS:
            raise ValueError(f"unknown selection.rpe {self.rpe!r}; choose one of {', '.join(RPE_FORMS)}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"selection.weight must lie in [0, 1], got {self.weight}")
        if self.fusion not in ("weighted", "rrf"):
            raise ValueError(f"unknown selection.fusion {self.fusion!r}; choose weighted or rrf")
        if self.window < 1:
            raise ValueError("selection.window must be >= 1")


@dataclass
class RecostResult:
    order: np.ndarray        # selected rows, best fused rank first
    outcome: np.ndarray      # per row: selected / below_budget / near_duplicate / above_max / score_nan / error
    fused_rank: np.ndarray   # per row: 0 = best eligible row; -1 when not eligible
    cluster: np.ndarray      # per row: k-means cluster of eligible rows; -1 otherwise

    def counts(self) -> dict[str, int]:
        return label_counts(self.outcome)


def eligible_rows(ifd: np.ndarray, rpe: np.ndarray, errored: np.ndarray, p: RecostParams) -> np.ndarray:
    """Per-row outcome before ranking: error, score_nan, above_max, or '' (eligible)."""
    outcome = labels(len(ifd), "")
    finite = np.isfinite(ifd) & np.isfinite(rpe)
    outcome[~finite] = DROP_NAN
    if p.max_score is not None:
        above = np.isfinite(ifd) & ((ifd > p.max_score) if p.max_inclusive else (ifd >= p.max_score))
        outcome[above] = DROP_ABOVE
    outcome[np.asarray(errored, dtype=bool)] = DROP_ERROR
    return outcome


def fused_order(ifd: np.ndarray, rpe: np.ndarray, p: RecostParams) -> np.ndarray:
    """Rows best first by the fused IFD (descending) and RPE (by its form) ranks, weighted by
    ``p.weight``; ties keep the lower index."""
    order, _ = fuse_ranks([ifd, rpe], [p.weight, 1.0 - p.weight], p.fusion,
                          higher_is_better=[True, p.rpe == "diff"], rrf_k=p.rrf_k)
    return order


def recost_select(ifd: np.ndarray, rpe: np.ndarray, errored: np.ndarray, emb: np.ndarray, k: int,
                  p: RecostParams = RecostParams()) -> RecostResult:
    """Select ``k`` rows: eligibility → fused rank (IFD desc, RPE by form) → k-means clusters →
    per-cluster sliding-window diversity with proportional quotas."""
    p.check()
    ifd = np.asarray(ifd, dtype=np.float64)
    rpe = np.asarray(rpe, dtype=np.float64)
    n = len(ifd)
    outcome = eligible_rows(ifd, rpe, errored, p)
    elig = np.flatnonzero(outcome == "")
    fused_rank = np.full(n, -1, dtype=np.int64)
    cluster = np.full(n, -1, dtype=np.int64)
    if len(elig) == 0:
        return RecostResult(np.zeros(0, dtype=np.int64), outcome.astype(str), fused_rank, cluster)
    order_e = fused_order(ifd[elig], rpe[elig], p)
    fused_rank[elig[order_e]] = np.arange(len(elig))
    E = normalise(emb[elig])
    c = p.n_clusters or auto_clusters(len(elig))
    _, assign = kmeans(E, c, seed=p.seed, nredo=p.kmeans_redo)
    cluster[elig] = assign
    picked = elig[sliding_window_diverse(order_e, E, k, p.window, p.tau, assign)]
    outcome[elig] = NOT_SELECTED
    outcome[picked] = KEPT
    label_near_duplicates(outcome, fused_rank, emb, picked, p.tau)
    return RecostResult(picked, outcome.astype(str), fused_rank, cluster)


def label_near_duplicates(outcome: np.ndarray, fused_rank: np.ndarray, emb: np.ndarray, picked: np.ndarray,
                          tau: float, max_pairs: float = 2e9, block: int = 4096) -> None:
    """Relabel unselected rows that rank ahead of the last selected row and lie within ``tau`` cosine
    of a selected row as ``near_duplicate`` (the diversity stage's skips); in place. Skipped (left as
    below_budget) when that comparison would exceed ``max_pairs`` similarity evaluations."""
    if not len(picked):
        return
    cand = np.flatnonzero((outcome == NOT_SELECTED) & (fused_rank >= 0) & (fused_rank < fused_rank[picked].max()))
    if not len(cand) or len(cand) * len(picked) > max_pairs:
        return
    P = normalise(emb[picked])
    for s in range(0, len(cand), block):
        rows = cand[s:s + block]
        near = (normalise(emb[rows]) @ P.T).max(axis=1) > tau
        outcome[rows[near]] = NEAR_DUPLICATE
