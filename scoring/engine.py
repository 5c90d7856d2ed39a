"""Row-level scoring: render every pass of every row, score them in one length-sorted pool, and
return the per-row columns of scores.parquet. Backend-agnostic (anything with ``score(items)``)."""
from __future__ import annotations

import logging
from typing import Any, Protocol, Sequence

import numpy as np

from records import schema
from scoring.passes import RenderConfig, render_rows
from scoring.render import PassIds, Rendered

log = logging.getLogger(__name__)


class Backend(Protocol):
    def score(self, items: Sequence[PassIds]) -> tuple[np.ndarray, np.ndarray]: ...


def empty_columns(n: int, passes: Sequence[str]) -> dict[str, np.ndarray]:
    """Score columns for ``n`` rows, NaN / 0 until filled."""
    cols: dict[str, np.ndarray] = {}
    for p in passes:
        cols[schema.nll_sum_col(p)] = np.full(n, np.nan)
        cols[schema.tokens_col(p)] = np.zeros(n, dtype=np.int64)
    for c in (schema.PROMPT_TOKENS, schema.RESPONSE_TOKENS):
        cols[c] = np.zeros(n, dtype=np.int64)
    cols[schema.TRUNCATED] = np.zeros(n, dtype=bool)
    cols[schema.RESPONSE_TRUNCATED] = np.zeros(n, dtype=bool)
    if "know" in passes:
        cols[schema.KNOWLEDGE_TOKENS] = np.zeros(n, dtype=np.int64)
        cols[schema.KNOWLEDGE_TRUNCATED] = np.zeros(n, dtype=bool)
    cols[schema.ERROR] = np.full(n, None, dtype=object)
    return cols


def score_rows(rows: Sequence[dict[str, Any]], cfg: RenderConfig, tok: Any, backend: Backend
               ) -> dict[str, np.ndarray]:
    """Score all passes of ``rows``; rows that cannot be rendered or scored get an error reason."""
    return score_rendered(render_rows(rows, cfg, tok), cfg.passes, backend)


def score_rendered(rendered: Sequence[Rendered], passes: Sequence[str], backend: Backend
                   ) -> dict[str, np.ndarray]:
    """Score rows already rendered (in this process or by a CPU render stage)."""
    cols = empty_columns(len(rendered), passes)
    items: list[PassIds] = []
    owners: list[tuple[int, str]] = []
    for i, r in enumerate(rendered):
        cols[schema.PROMPT_TOKENS][i] = r.prompt_tokens
        cols[schema.RESPONSE_TOKENS][i] = r.response_tokens
        cols[schema.TRUNCATED][i] = r.truncated
        cols[schema.RESPONSE_TRUNCATED][i] = r.response_truncated
        cols[schema.ERROR][i] = r.error
        if schema.KNOWLEDGE_TOKENS in cols:
            cols[schema.KNOWLEDGE_TOKENS][i] = r.knowledge_tokens
            cols[schema.KNOWLEDGE_TRUNCATED][i] = r.knowledge_truncated
        if r.error:
            continue
        for name in passes:
            items.append(r.passes[name])
            owners.append((i, name))
    if items:
        sums, counts = backend.score(items)
        for (i, name), s, c in zip(owners, sums, counts):
            cols[schema.nll_sum_col(name)][i] = s
            cols[schema.tokens_col(name)][i] = c
    return cols
