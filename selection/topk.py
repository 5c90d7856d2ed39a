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
    """Top-``k`` rows by ``score`` among valid rows (:func:`row_outcomes`). Ties are broken by lower
    row index, so the result is deterministic."""
    score = np.asarray(score, dtype=np.float64)
    outcome = row_outcomes(score, errored, max_score, min_score, max_inclusive)
    order = top_rows(score, np.flatnonzero(outcome == DROP_BUDGET), k)
    outcome[order] = KEPT
    return Selection(order=order, outcome=outcome)


def row_outcomes(score: np.ndarray, errored: np.ndarray, max_score: float | None = 1.0,
                 min_score: float | None = None, max_inclusive: bool = True) -> np.ndarray:
    """Each row's outcome before the budget: ``below_budget`` for the rows that compete for it, else
    the drop reason. A row is dropped when it errored, its score is NaN/inf, above ``max_score``
    (Cherry keeps IFD == 1; ``max_inclusive=False`` gives Superfiltering's strict ``< 1``), or below
    ``min_score``. Row by row, so a shard at a time gives what the whole pool gives."""
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
    return outcome


def top_rows(score: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best of ``valid`` rows, highest score first, ties to the lower row: a partition finds
    the k-th best score, and only the rows at or above it are sorted (not all N)."""
    valid = np.asarray(valid)
    return valid[best(np.asarray(score)[valid], valid, k)]


def best(key: np.ndarray, pos: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best entries by (``key`` descending, ``pos`` ascending), best first."""
    k = max(int(k), 0)
    idx = np.arange(len(key))
    if k < len(key):
        kth = np.partition(key, len(key) - k)[len(key) - k] if k else np.inf
        idx = idx[key >= kth]  # every entry that can make the cut, ties at the k-th key included
    return idx[np.lexsort((pos[idx], -key[idx]))][:k]


class TopK:
    """The best ``cap`` rows of a stream by (key descending, position ascending), each with payload
    columns: what :func:`top_rows` returns over the whole stream, in O(cap + one chunk) memory.
    Keys must be finite."""

    BUFFER = 1 << 16  # rows buffered beyond ``cap`` (at least; a quarter of cap above that) before a cut

    def __init__(self, cap: int, payload: tuple[str, ...] = ()) -> None:
        self.cap = max(int(cap), 0)
        self.names = ("key", "pos", *payload)
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._buffered = 0

    def add(self, key: np.ndarray, pos: np.ndarray, **payload: np.ndarray) -> None:
        if not len(key) or not self.cap:
            return
        cols = (np.asarray(key, dtype=np.float64), np.asarray(pos, dtype=np.int64),
                *(np.asarray(payload[n]) for n in self.names[2:]))
        self._parts.append(cols)
        self._buffered += len(key)
        if self._buffered > self.cap + max(self.cap // 4, self.BUFFER):
            self._compact()

    def _compact(self) -> None:
        cols = [np.concatenate(c) for c in zip(*self._parts)]
        keep = best(cols[0], cols[1], self.cap)
        self._parts = [tuple(c[keep] for c in cols)]
        self._buffered = len(keep)

    def result(self) -> dict[str, np.ndarray]:
        """The kept rows, best first: ``key``, ``pos`` and every payload column."""
        if not self._parts:
            return {n: np.zeros(0, dtype=np.float64 if n == "key" else np.int64) for n in self.names}
        self._compact()
        return dict(zip(self.names, self._parts[0]))
