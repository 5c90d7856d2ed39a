"""Ray Data actor adapter for embedding pool rows with a (possibly fine-tuned) causal LM.

``what=full``: the row's whole training sequence (prompt + response + EOS), DiverseEvol's space.
``what=instruction``: the formatted instruction only, with its perplexity from the same forward
(Cherry's pre-experience stage: ``instr_nll_sum`` / ``instr_tokens``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs.actor import batch_rows, setup_actor
from jobs.crash_guard import CrashGuard, batch_key
from jobs.specs import EmbedSpec, Resources
from records import schema
from records.shards import emb_column
from scoring.embed import embed_and_score
from scoring.passes import pad_token, render_rows
from scoring.render import PassIds

WHAT = ("full", "instruction")


def items_for(rendered: list[Any], what: str, max_length: int) -> list[PassIds]:
    """Sequences to embed: the whole cond pass (nothing scored), or its context cut to ``max_length``
    from the right like the reference's instruction perplexity (scored after the start token)."""
    out = []
    for r in rendered:
        c = r.passes["cond"]
        out.append(
            PassIds(c.ids, len(c.ids)) if what == "full" else PassIds(c.ids[: min(c.n_ctx, max_length)], 1)
        )
    return out


class RowEmbedActor:
    """``map_batches`` UDF: record columns in; ``emb`` (+ instruction NLL) and an error reason out.
    With a ``journal`` directory, a batch that kills the process is retried ``max_attempts`` times in
    all, then bisected to the rows that do, which get ``actor_died`` (``jobs.crash_guard``)."""

    JOURNALED = True  # takes ``journal`` / ``max_attempts`` (jobs.pipeline.stream)

    def __init__(self, spec: EmbedSpec, threads: int = 1, journal: str | None = None, max_attempts: int = 3
                 ) -> None:
        from scoring.models import load_model

        setup_actor(threads)
        if spec.what not in WHAT:
            raise ValueError(f"unknown embedding target {spec.what!r}; choose one of {', '.join(WHAT)}")
        self.spec = spec
        rc = spec.render
        self.max_length = rc.limits.max_length
        if spec.what == "instruction":  # only the prompt matters: never let the response crowd it out
            rc = replace(rc, limits=replace(rc.limits, max_length=1 << 30, max_response_tokens=1))
        self.render = replace(rc, passes=("cond",), score_eos=spec.what == "full", mode="clean")
        self.tok, self.model = load_model(
            spec.model.path,
            device=spec.model.device,
            dtype=spec.model.dtype,
            trust_remote_code=spec.model.trust_remote_code,
        )
        self.pad = pad_token(self.tok)
        self.policy = spec.policy
        self.dim = int(self.model.config.hidden_size)
        self.guard = CrashGuard(journal, max_attempts, self._blank, schema.ERROR, schema.E_ACTOR_DIED)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        positions = batch[schema.POSITION]
        cols = self.guard.run(batch_key(positions), len(positions), lambda lo, hi: self._rows(batch, lo, hi))
        return pa.table(
            {
                schema.ID: pa.array(batch[schema.ID].tolist(), pa.string()),
                schema.POSITION: pa.array(positions, pa.int64()),
                "instr_nll_sum": pa.array(cols["instr_nll_sum"]),
                "instr_tokens": pa.array(cols["instr_tokens"]),
                schema.RESPONSE_TOKENS: pa.array(cols[schema.RESPONSE_TOKENS], pa.int64()),
                schema.ERROR: pa.array(cols[schema.ERROR].tolist(), pa.string()),
                schema.EMB: emb_column(cols[schema.EMB]),
            }
        )

    def _blank(self, n: int) -> dict[str, np.ndarray]:
        """``n`` rows with no embedding (zeros), no NLL and no error yet."""
        return {"instr_nll_sum": np.full(n, np.nan), "instr_tokens": np.zeros(n, dtype=np.int64),
                schema.RESPONSE_TOKENS: np.zeros(n, dtype=np.int64), schema.ERROR: np.full(n, None, dtype=object),
                schema.EMB: np.zeros((n, self.dim), dtype=np.float32)}

    def _rows(self, batch: dict[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
        """The columns of rows ``[lo, hi)`` of the batch."""
        rendered = render_rows(batch_rows({k: v[lo:hi] for k, v in batch.items()}), self.render, self.tok)
        cols = self._blank(len(rendered))
        good = [i for i, r in enumerate(rendered) if not r.error]
        if good:
            items = items_for([rendered[i] for i in good], self.spec.what, self.max_length)
            e, s, c = embed_and_score(self.model, items, self.pad, self.policy, self.spec.pooling)
            cols[schema.EMB][good], cols["instr_nll_sum"][good], cols["instr_tokens"][good] = e, s, c
        cols[schema.RESPONSE_TOKENS][:] = [r.response_tokens for r in rendered]
        cols[schema.ERROR][:] = [r.error for r in rendered]
        return cols


def embed_staged(
    staged: Any, spec: EmbedSpec, resources: Resources, shard_dir: Path, emb_dir: Path, cfg: Any
) -> tuple[pa.Table, np.ndarray]:
    """Run :class:`RowEmbedActor` over every staged shard (resumable per shard in ``shard_dir``, vectors
    in ``emb_dir``). Returns the complete position-sorted per-row table and ``[n, hidden]`` float32
    embeddings (zeros for rows with an error)."""
    from jobs.pipeline import run_stage, shard_item
    from records import shards, tables

    shard_dir.mkdir(parents=True, exist_ok=True)
    run_stage(
        shard_dir,
        staged.bounds,
        [shard_item(s) for s in staged.shards],
        RowEmbedActor,
        spec,
        resources,
        cfg,
        "embedded",
        emb_dir,
    )
    table = tables.validate_complete(shards.load_all(shard_dir, len(staged.shards)), staged.n_rows)
    return table, shards.load_embeddings(emb_dir, len(staged.shards)).astype(np.float32)


def embed_resumable(
    staged: Any, spec: EmbedSpec, resources: Resources, base: Path, key: dict[str, Any], cfg: Any
) -> tuple[pa.Table, np.ndarray]:
    """:func:`embed_staged` into ``base/shards`` and ``base/embeddings`` under a run key: a rerun with the
    same key reuses the finished shards; a new key (or ``resume=false``) starts both afresh."""
    import shutil

    from records import shards
    from records.layout import EMBEDDINGS_DIR

    shard_dir = shards.prepare(base, key, bool(cfg.resume))
    if not shards.done_shards(shard_dir):
        shutil.rmtree(base / EMBEDDINGS_DIR, ignore_errors=True)  # no vectors of an earlier run
    return embed_staged(staged, spec, resources, shard_dir, base / EMBEDDINGS_DIR, cfg)
