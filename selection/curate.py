"""The recommended pipeline's selection math (issue 18): quality guards over what the scoring passes
already computed, then a ranking, then cluster-proportional diversity over the budget.

Every guard names its reason, so the report can say what each step removed:

- ``guard_short``: the response has fewer than ``min_response_tokens`` tokens (placeholders such as
  "N/A", "TODO", "..." carry no instruction-following signal);
- ``guard_ifd``: IFD ≥ ``max_ifd`` (the instruction does not make the response more likely: Cherry's
  own filter, here inclusive, because IFD = 1 means no help at all);
- ``guard_cond_tail``: the conditioned loss is in the pool's top ``cond_tail`` share (a response the
  model finds very unlikely *given its instruction*: answers to another question, garbled text);
- ``guard_generic``: the unconditioned loss is in the pool's bottom ``generic_tail`` share (a response
  the model predicts well *without* its instruction: boilerplate, refusals, canned text);
- ``guard_knowledge``: with a trusted KB, the relative predictive entropy is below ``min_rpe`` (the
  retrieved knowledge makes the response *less* likely: RECOST's check).

Pure numpy (+ faiss k-means); no Ray, no files.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from records.tables import labels
from selection.diversity import normalise, sliding_window_diverse
from selection.kmeans import auto_clusters, kmeans
from selection.topk import DROP_ERROR, DROP_NAN, KEPT, top_rows

BELOW_BUDGET = "below_budget"
GUARDS = ("guard_short", "guard_ifd", "guard_cond_tail", "guard_generic", "guard_knowledge")


@dataclass(frozen=True)
class GuardParams:
    """Thresholds of the quality guards (None / 0 switches a guard off)."""

    min_response_tokens: int = 0
    max_ifd: float | None = None
    cond_tail: float | None = None     # share of the pool, e.g. 0.1 = the highest 10% of conditioned losses
    generic_tail: float | None = None  # share of the pool, e.g. 0.1 = the lowest 10% of unconditioned losses
    min_rpe: float | None = None       # RPE (difference form) below this is dropped; needs a KB

    def check(self) -> None:
        for name in ("cond_tail", "generic_tail"):
            v = getattr(self, name)
            if v is not None and not 0.0 < v < 1.0:
                raise ValueError(f"curate.guard.{name} must lie in (0, 1) or be null, got {v}")
        if self.min_response_tokens < 0:
            raise ValueError("curate.guard.min_response_tokens must be >= 0")

    @property
    def needs_uncond(self) -> bool:
        """Whether a guard reads the unconditioned pass (IFD or the generic tail)."""
        return self.max_ifd is not None or bool(self.generic_tail)


def _tail(x: np.ndarray, ok: np.ndarray, share: float, upper: bool) -> np.ndarray:
    """Rows of ``ok`` in the upper (or lower) ``share`` of ``x`` over the ``ok`` rows."""
    if not ok.any():
        return np.zeros(len(x), dtype=bool)
    cut = np.quantile(x[ok], 1.0 - share if upper else share)
    return ok & ((x > cut) if upper else (x < cut))


def guard_reasons(response_tokens: np.ndarray, cond_loss: np.ndarray, uncond_loss: np.ndarray | None,
                  ifd: np.ndarray | None, errored: np.ndarray, p: GuardParams, rpe: np.ndarray | None = None
                  ) -> np.ndarray:
    """Per row: "" (passes every guard), ``error``, ``score_nan`` or the first guard that drops it
    (in the order of :data:`GUARDS`). Tails are taken over the rows that are valid and scored.
    ``uncond_loss`` and ``ifd`` are None when the unconditioned pass was not run (no guard may read it)."""
    p.check()
    if p.needs_uncond and (uncond_loss is None or ifd is None):
        raise ValueError("curate.guard.max_ifd / generic_tail read the unconditioned pass, which was not run")
    n = len(cond_loss)
    out = labels(n, "")
    errored = np.asarray(errored, dtype=bool)
    finite = np.isfinite(cond_loss)
    if uncond_loss is not None and ifd is not None:
        finite &= np.isfinite(uncond_loss) & np.isfinite(ifd)
    ok = finite & ~errored
    checks = [
        ("guard_short", ok & (np.asarray(response_tokens) < p.min_response_tokens) if p.min_response_tokens else None),
        ("guard_ifd", ok & (ifd >= p.max_ifd) if p.max_ifd is not None and ifd is not None else None),
        ("guard_cond_tail", _tail(cond_loss, ok, p.cond_tail, upper=True) if p.cond_tail else None),
        ("guard_generic", _tail(uncond_loss, ok, p.generic_tail, upper=False)
         if p.generic_tail and uncond_loss is not None else None),
        ("guard_knowledge", ok & np.isfinite(rpe) & (rpe < p.min_rpe)
         if p.min_rpe is not None and rpe is not None else None),
    ]
    for name, hit in reversed(checks):  # the first guard in GUARDS order wins: assign in reverse
        if hit is not None:
            out[hit] = name
    out[~finite] = DROP_NAN
    out[errored] = DROP_ERROR
    return out


@dataclass(frozen=True)
class DiversityParams:
    """Cluster-proportional sampling over the budget (RECOST's sampler); ``clusters`` None = auto."""

    enabled: bool = True
    clusters: int | None = None
    window: int = 4
    tau: float = 0.95
    seed: int = 0


@dataclass
class CurateResult:
    order: np.ndarray    # selected rows, best first within the walk
    outcome: np.ndarray  # per row: selected / below_budget / a guard / error / score_nan / a dedup label
    cluster: np.ndarray  # per row: k-means cluster of eligible rows (-1 otherwise, or no diversity)


def curate_select(score: np.ndarray, higher_is_better: bool, reasons: np.ndarray, emb: np.ndarray | None, k: int,
                  d: DiversityParams = DiversityParams()) -> CurateResult:
    """Rank the rows that passed every step (``reasons == ""``) by ``score`` (ties: lower row first)
    and take ``k``: cluster-proportional over k-means clusters of ``emb`` when diversity is on, else
    the top ``k``."""
    score = np.asarray(score, dtype=np.float64)
    n = len(score)
    outcome = np.asarray(reasons, dtype=object).copy()
    elig = np.flatnonzero((outcome == "") & np.isfinite(score))
    outcome[(outcome == "") & ~np.isfinite(score)] = DROP_NAN
    ranked = top_rows(score if higher_is_better else -score, elig, len(elig))
    cluster = np.full(n, -1, dtype=np.int64)
    if d.enabled and emb is not None and len(ranked) > k > 0:
        E = normalise(emb[ranked])
        _, assign = kmeans(E, d.clusters or auto_clusters(len(ranked)), seed=d.seed, nredo=3)
        cluster[ranked] = assign
        picked = ranked[sliding_window_diverse(np.arange(len(ranked)), E, k, d.window, d.tau, assign)]
    else:
        picked = ranked[:k]
    outcome[elig] = BELOW_BUDGET
    outcome[picked] = KEPT
    return CurateResult(np.asarray(picked, dtype=np.int64), outcome, cluster)
