"""Comparing fine-tuned arms on held-out targets: corpus NLL, the paired bootstrap against the random
arms' mean, spread and rank. Pure numpy; ``jobs.compare`` feeds it the per-row NLL sums.

The metric of an arm is the mean per-token NLL of the reference responses (summed NLL over summed
tokens, i.e. ``log`` perplexity of the references). Lower is better. The paired bootstrap resamples
eval rows once per draw and applies the same draw to every arm, so the interval of a difference
reflects only how the arms disagree row by row, not how hard the rows are.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def corpus_nll(sums: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Mean per-token NLL along the last axis (summed NLL / summed tokens); NaN without tokens."""
    s, t = np.asarray(sums, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    tot = t.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, s.sum(axis=-1) / np.maximum(tot, 1e-300), np.nan)


def resample_weights(n: int, draws: int, seed: int) -> np.ndarray:
    """(draws, n) multiplicities of each row in ``draws`` bootstrap resamples of ``n`` rows."""
    rng = np.random.default_rng(int(seed))
    W = np.zeros((draws, n), dtype=np.float64)
    idx = rng.integers(0, n, size=(draws, n))
    np.add.at(W, (np.repeat(np.arange(draws), n), idx.ravel()), 1.0)
    return W


def bootstrap_metrics(sums: np.ndarray, tokens: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(draws, arms) corpus NLL of every arm under every resample. ``sums``/``tokens``: (arms, rows)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (W @ np.asarray(sums, np.float64).T) / (W @ np.asarray(tokens, np.float64).T)


@dataclass(frozen=True)
class Interval:
    """An arm's metric minus the random arms' mean (negative: lower NLL than random), its paired
    bootstrap interval, and where the arm lies against the random arms themselves: -1 below every one
    of them, +1 above every one, 0 among them (the training-seed noise the interval does not see)."""

    diff: float
    lo: float
    hi: float
    side: int = 0

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` than random only when the interval excludes 0 *and* the arm lies
        beyond every random arm; else ``within noise``."""
        if self.hi < 0 and self.side < 0:
            return "better"
        if self.lo > 0 and self.side > 0:
            return "worse"
        return "within noise"


def references(n_arms: int, random_arms: list[int]) -> list[list[int]]:
    """The random arms each arm is measured against: all of them, except that a random arm is measured
    against the *other* random arms (leave-one-out) when there are at least two."""
    return [
        [r for r in random_arms if r != i] if i in random_arms and len(random_arms) > 1 else list(random_arms)
        for i in range(n_arms)
    ]


def paired_diffs(
    sums: np.ndarray,
    tokens: np.ndarray,
    random_arms: list[int],
    draws: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Interval]:
    """Per arm: its metric minus its reference random arms' mean metric (:func:`references`), with a
    paired percentile bootstrap interval over eval rows (every arm sees the same resamples)."""
    sums, tokens = np.asarray(sums, np.float64), np.asarray(tokens, np.float64)
    if not random_arms:
        raise ValueError("a difference to random needs at least one random arm")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    point = corpus_nll(sums, tokens)
    M = bootstrap_metrics(sums, tokens, resample_weights(sums.shape[1], draws, seed))
    a = (1 - confidence) / 2
    out = []
    for i, ref in enumerate(references(len(point), random_arms)):
        D = M[:, i] - M[:, ref].mean(axis=1)
        others = point[ref]
        side = -1 if point[i] < others.min() else 1 if point[i] > others.max() else 0
        out.append(Interval(float(point[i] - others.mean()), float(np.nanquantile(D, a)),
                            float(np.nanquantile(D, 1 - a)), side))
    return out


def spread(values: np.ndarray) -> dict[str, float | None]:
    """The random arms' spread: sample std (None for one arm), min, max and range."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else None,
        "min": float(v.min()),
        "max": float(v.max()),
        "range": float(v.max() - v.min()),
    }


def ranks(values: np.ndarray) -> np.ndarray:
    """1 = lowest metric (best); ties share the better rank; NaN ranks last."""
    v = np.where(np.isfinite(values), values, np.inf)
    return np.array([1 + int((v < x).sum()) for x in v], dtype=np.int64)
