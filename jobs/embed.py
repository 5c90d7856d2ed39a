"""Ray Data actor adapter for embedding pool rows with a (possibly fine-tuned) causal LM.

``what=full``: the row's whole training sequence (prompt + response + EOS), DiverseEvol's space.
``what=instruction``: the formatted instruction only, with its perplexity from the same forward
(Cherry's pre-experience stage: ``instr_nll_sum`` / ``instr_tokens``).
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from jobs.actor import render_config
from jobs.shards import emb_column
from scoring import schema
from scoring.batching import BatchPolicy
from scoring.embed import embed_and_score
from scoring.passes import render_rows, start_token
from scoring.render import PassIds

WHAT = ("full", "instruction")


def items_for(rendered: list[Any], what: str, max_length: int) -> list[PassIds]:
    """Sequences to embed: the whole cond pass (nothing scored), or its context cut to ``max_length``
    from the right like the reference's instruction perplexity (scored after the start token)."""
    out = []
    for r in rendered:
        c = r.passes["cond"]
        out.append(PassIds(c.ids, len(c.ids)) if what == "full" else PassIds(c.ids[: min(c.n_ctx, max_length)], 1))
    return out


class RowEmbedActor:
    """``map_batches`` UDF: record columns in; ``emb`` (+ instruction NLL) and an error reason out."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import torch

        from scoring.models import load_model

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if spec.get("threads"):
            torch.set_num_threads(int(spec["threads"]))
        if spec["what"] not in WHAT:
            raise ValueError(f"unknown embedding target {spec['what']!r}; choose one of {', '.join(WHAT)}")
        self.spec = spec
        rc = render_config(spec)
        self.max_length = rc.limits.max_length
        if spec["what"] == "instruction":  # only the prompt matters: never let the response crowd it out
            rc = replace(rc, limits=replace(rc.limits, max_length=1 << 30, max_response_tokens=1))
        self.render = replace(rc, passes=("cond",), score_eos=spec["what"] == "full", mode="clean")
        self.tok, self.model = load_model(spec["model_path"], device=spec["device"], dtype=spec.get("dtype", "auto"))
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else start_token(self.tok)
        self.policy = BatchPolicy(**spec.get("policy", {}))

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch[schema.ID])
        rows = [{k: batch[k][i] for k in schema.RECORD_COLUMNS} for i in range(n)]
        rendered = render_rows(rows, self.render, self.tok)
        good = [i for i, r in enumerate(rendered) if not r.error]
        dim = int(self.model.config.hidden_size)
        E = np.zeros((n, dim), dtype=np.float32)
        sums = np.full(n, np.nan)
        counts = np.zeros(n, dtype=np.int64)
        if good:
            e, s, c = embed_and_score(self.model, items_for([rendered[i] for i in good], self.spec["what"], self.max_length),
                                      self.pad, self.policy, self.spec.get("pooling", "mean"))
            E[good], sums[good], counts[good] = e, s, c
        return pa.table({schema.ID: pa.array(batch[schema.ID].tolist(), pa.string()),
                         schema.POSITION: pa.array(batch[schema.POSITION], pa.int64()),
                         "instr_nll_sum": pa.array(sums), "instr_tokens": pa.array(counts),
                         schema.ERROR: pa.array([r.error for r in rendered], pa.string()),
                         schema.EMB: emb_column(E)})
