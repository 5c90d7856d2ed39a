"""The streamed merge (one shard at a time) gives exactly what the in-memory merge gave: the same
outcomes, the same scores.parquet, the same selected rows; a missing or misnumbered shard is loud."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import ifd, merge
from records import schema, shards, tables
from records.shards import write_shard

BOUNDS = [(0, 40), (40, 40), (80, 17)]


def score_shards(d: Path, dup: bool = False) -> None:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k, (start, n) in enumerate(BOUNDS):
        resp = rng.integers(1, 50, n)
        err = np.full(n, None, dtype=object)
        err[rng.random(n) < 0.1] = "scorer_failed:X"
        cond = resp * rng.uniform(0.5, 2.0, n)
        cond[3] = cond[5] = 1.0 * resp[3]  # ties
        write_shard(d, k, pa.table({
            schema.ID: [f"id{start + i}" for i in range(n)], schema.POSITION: np.arange(start, start + n),
            "cond_nll_sum": cond, "cond_tokens": resp, "uncond_nll_sum": resp * rng.uniform(1.0, 2.5, n),
            "uncond_tokens": resp, schema.PROMPT_TOKENS: rng.integers(5, 30, n), schema.RESPONSE_TOKENS: resp,
            schema.ERROR: pa.array(err, pa.string()),
        }))


@pytest.mark.parametrize("score", ["ifd_ppl", "ifd_loss"])
def test_streamed_merge_equals_the_in_memory_one(tmp_path: Path, score: str) -> None:
    d = tmp_path / "shards"
    score_shards(d)
    n = sum(b[1] for b in BOUNDS)
    extra = {"duplicate_of": np.where(np.arange(n) % 11 == 4, 0, -1)}
    sel = ifd.IFDSelection(0.2, score, 1.0, score == "ifd_loss", None)
    # in memory, as before
    table = tables.validate_complete(shards.load_all(d, len(BOUNDS)), n)
    table = tables.with_columns(table, {**ifd.derived(table), **extra})
    want_table, want, want_info = ifd.select_ifd(table, sel)
    # streamed
    m = merge.merge_scores(d, BOUNDS, score, ifd.derived, extra)
    got, info = ifd.select_scores(m.score, m.errored, m.copies, sel)
    assert got.order.tolist() == want.order.tolist() and info == want_info
    assert got.outcome.tolist() == want.outcome.tolist()
    chosen = merge.write_scores(d, BOUNDS, ifd.derived, extra, {ifd.OUTCOME: got.outcome}, got.order,
                                tmp_path / "scores.parquet")
    assert pq.read_table(tmp_path / "scores.parquet").equals(want_table)
    assert chosen.equals(want_table.take(pa.array(np.sort(got.order))))
    assert m.tokens == int(table.column(schema.PROMPT_TOKENS).to_numpy().sum()
                           + table.column(schema.RESPONSE_TOKENS).to_numpy().sum())
    assert m.error_list().tolist() == table.column(schema.ERROR).to_pylist()


def test_a_missing_or_misnumbered_shard_is_loud(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    score_shards(d)
    (d / "part-00001.done").unlink()
    with pytest.raises(RuntimeError, match=r"\[1\] are not complete"):
        merge.merge_scores(d, BOUNDS, "ifd_ppl", ifd.derived)
    score_shards(d)
    with pytest.raises(RuntimeError, match=r"score shard 1 holds 40 rows for input rows 41\.\.80"):
        merge.merge_scores(d, [(0, 40), (41, 40), (81, 17)], "ifd_ppl", ifd.derived)
