"""IFD selection: drop errored / non-finite / out-of-band rows, then keep the highest scores."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from records.tables import label_counts, labels

KEPT = "selected"
DROP_ERROR = "error"
DROP_NAN = "score_nan"
DROP_ABOVE = "above_max"
DROP_BELOW = "below_min"
DROP_BUDGET = "below_budget"


@dataclass
class Selection:
    """Selected row indices (in descending score order) and a per-row outcome label."""

    order: np.ndarray
    outcome: np.ndarray

    def counts(self) -> dict[str, int]:
        return label_counts(self.outcome)


def select_top(score: np.ndarray, errored: np.ndarray, k: int, max_score: float | None = 1.0,
               min_score: float | None = None, max_inclusive: bool = True) -> Selection:
    """Top-``k`` rows by ``score`` among valid rows.

    A row is dropped when it errored, its score is NaN/inf, above ``max_score`` (Cherry keeps
    IFD == 1; ``max_inclusive=False`` gives Superfiltering's strict ``< 1``), or below
    ``min_score``. Ties are broken by lower row index, so the result is deterministic.
    """
    score = np.asarray(score, dtype=np.float64)
    outcome = labels(score.shape[0], DROP_BUDGET)
    finite = np.isfinite(score)
    outcome[~finite] = DROP_NAN
    if max_score is not None:
        above = finite & ((score > max_score) if max_inclusive else (score >= max_score))
        outcome[above] = DROP_ABOVE
    if min_score is not None:
        outcome[finite & (score < min_score)] = DROP_BELOW
    outcome[np.asarray(errored, dtype=bool)] = DROP_ERROR
    valid = np.flatnonzero(outcome == DROP_BUDGET)
    order = top_rows(score, valid, k)
    outcome[order] = KEPT
    return Selection(order=order, outcome=outcome)


def top_rows(score: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best of ``valid`` rows, highest score first, ties to the lower row: a partition finds
    the k-th best score, and only the rows at or above it are sorted (not all N)."""
    k = max(int(k), 0)
    if k < len(valid):
        s = score[valid]
        kth = np.partition(s, len(s) - k)[len(s) - k] if k else np.inf
        valid = valid[s >= kth]  # every row that can make the cut, ties at the k-th score included
    return valid[np.lexsort((valid, -score[valid]))][:k]
