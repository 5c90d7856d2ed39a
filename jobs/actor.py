"""The Ray Data actor adapter: turns a scoring backend into a ``map_batches`` callable class.

Constructor arguments are a small frozen spec (``jobs.specs``) and the actor's thread count; the
model loads inside the actor, once.
A batch that makes the backend fail (an exception, including a device out-of-memory) is retried row by
row, so one pathological row ends up with an error reason instead of killing the job. A crash that
kills the actor process itself is Ray's to handle: the actor is restarted and the task retried.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from jobs.crash_guard import CrashGuard, batch_key
from jobs.specs import ScorerSpec
from records import schema
from scoring.engine import empty_columns, score_rendered
from scoring.passes import RenderConfig, render_rows
from scoring.render import RENDERED, Rendered, from_columns, to_columns

log = logging.getLogger(__name__)


def setup_actor(threads: int) -> None:
    """Per-actor process settings, shared by every actor adapter: no tokenizer fork warnings, and
    ``threads`` torch threads (the CPUs Ray gave the actor)."""
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads:
        torch.set_num_threads(int(threads))


def batch_rows(batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """A numpy batch as row dicts of the record columns (plus ``knowledge`` when present)."""
    keys = [k for k in (*schema.RECORD_COLUMNS, schema.KNOWLEDGE) if k in batch]
    return [{k: batch[k][i] for k in keys} for i in range(len(batch[schema.ID]))]


def build_backend(spec: ScorerSpec) -> tuple[Any, Any]:
    """(tokenizer, backend) for a spec: ``hf`` (transformers) or ``vllm`` (one engine in this actor,
    on the GPU(s) Ray assigned it)."""
    from scoring.models import load_model, load_tokenizer

    m = spec.model
    if spec.backend == "vllm":
        from scoring.vllm_backend import VLLMScorer

        return load_tokenizer(m.path, m.trust_remote_code), VLLMScorer.from_path(m.path, spec.vllm)
    from scoring.hf import HFScorer
    from scoring.passes import pad_token

    tok, model = load_model(m.path, device=m.device, dtype=m.dtype, trust_remote_code=m.trust_remote_code)
    return tok, HFScorer(model, pad_token(tok), spec.policy, head_only=spec.head_only, compile=spec.compile,
                        reuse_prefix=spec.reuse_prefix)


class RenderActor:
    """``map_batches`` UDF on CPU: record columns in, rendered pass token ids out (the wire columns of
    ``scoring.render.to_columns``). Run ahead of GPU scorers so tokenisation overlaps the forward passes
    instead of stalling the GPU between calls (``backend.render_actors``)."""

    def __init__(self, spec: ScorerSpec, threads: int = 1) -> None:
        from scoring.models import load_tokenizer

        setup_actor(threads)
        self.render = spec.render
        self.render.validate()
        self.tok = load_tokenizer(spec.model.path, spec.model.trust_remote_code)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        rendered = render_isolated(batch_rows(batch), self.render, self.tok)
        return {
            schema.ID: batch[schema.ID],
            schema.POSITION: batch[schema.POSITION],
            **to_columns(rendered, self.render.passes),
        }


def render_isolated(rows: list[dict[str, Any]], cfg: RenderConfig, tok: Any) -> list[Rendered]:
    """Render a batch; if the tokenizer fails on it, render row by row so only the failing row gets
    an error reason."""
    try:
        return render_rows(rows, cfg, tok)
    except Exception as e:  # noqa: BLE001 - isolate the row the tokenizer cannot take
        log.warning("rendering %d rows failed (%s); retrying row by row", len(rows), e)
    out = []
    for row in rows:
        try:
            out.extend(render_rows([row], cfg, tok))
        except Exception as e:  # noqa: BLE001
            log.warning("row at position %s failed to render: %s", row.get(schema.POSITION), e)
            out.append(Rendered(error=f"{schema.E_SCORER}:{type(e).__name__}"))
    return out


class TokenCountActor(RenderActor):
    """``map_batches`` UDF on CPU: record columns in, each row's prompt and response token counts under
    the scorer's tokenizer and rendering out (the length baseline's only pass: no model). Set up as
    :class:`RenderActor` (the tokenizer only)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rendered = render_isolated(batch_rows(batch), self.render, self.tok)
        return {
            schema.ID: batch[schema.ID],
            schema.POSITION: batch[schema.POSITION],
            schema.PROMPT_TOKENS: np.array([r.prompt_tokens for r in rendered], dtype=np.int64),
            schema.RESPONSE_TOKENS: np.array([r.response_tokens for r in rendered], dtype=np.int64),
            schema.ERROR: np.array([r.error for r in rendered], dtype=object),
        }


class ScoringActor:
    """``map_batches`` UDF: record columns (or a render stage's token ids) in, per-pass sums/counts +
    bookkeeping columns out. With a ``journal`` directory, a batch that kills the process is retried
    ``max_attempts`` times in all, then bisected to the rows that do (``jobs.crash_guard``)."""

    PRE_RENDERED = True  # accepts RenderActor output
    JOURNALED = True  # takes ``journal`` / ``max_attempts`` (jobs.pipeline.stream)

    def __init__(self, spec: ScorerSpec, threads: int = 1, journal: str | None = None, max_attempts: int = 3
                 ) -> None:
        setup_actor(threads)
        self.render = spec.render
        self.render.validate()
        self.tok, self.backend = build_backend(spec)
        self.chunk_rows = spec.chunk_rows
        self.guard = CrashGuard(journal, max_attempts, lambda k: empty_columns(k, self.render.passes),
                                schema.ERROR, schema.E_ACTOR_DIED)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call per shard (rows in position order); scored in chunks of ``chunk_rows`` rows cut in
        that order, so a row's batch companions never depend on timing."""
        positions = batch[schema.POSITION]
        cols = self.guard.run(batch_key(positions), len(positions), lambda lo, hi: self._rows(batch, lo, hi))
        return {schema.ID: batch[schema.ID], schema.POSITION: positions, **cols}

    def _rows(self, batch: dict[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
        """Score columns of rows ``[lo, hi)`` of the batch."""
        batch = {k: v[lo:hi] for k, v in batch.items()}
        if RENDERED in batch:  # tokenised by the CPU render stage
            rendered = from_columns(batch, self.render.passes)
        else:
            rendered = render_isolated(batch_rows(batch), self.render, self.tok)
        size = int(self.chunk_rows or len(rendered) or 1)
        parts = [
            self._score(rendered[s : s + size], batch[schema.POSITION][s : s + size])
            for s in range(0, len(rendered), size)
        ]
        return (
            {k: np.concatenate([c[k] for c in parts]) for k in parts[0]}
            if parts
            else empty_columns(0, self.render.passes)
        )

    def _score(self, rendered: list[Rendered], positions: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return score_rendered(rendered, self.render.passes, self.backend)
        except Exception as e:  # noqa: BLE001 - isolate the failing row(s), see module docstring
            log.warning("batch of %d rows failed (%s); retrying row by row", len(rendered), e)
            return self._one_by_one(rendered, positions)

    def _one_by_one(self, rendered: list[Rendered], positions: np.ndarray) -> dict[str, np.ndarray]:
        cols = empty_columns(len(rendered), self.render.passes)
        for i, r in enumerate(rendered):
            try:
                one = score_rendered([r], self.render.passes, self.backend)
            except Exception as e:  # noqa: BLE001 - a row alone still fails: it gets the reason
                log.warning("row at position %s failed: %s", positions[i], e)
                cols[schema.ERROR][i] = f"{schema.E_SCORER}:{type(e).__name__}"
                continue
            for k, v in one.items():
                cols[k][i] = v[0]
        return cols
