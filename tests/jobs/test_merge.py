"""The streamed merge (one shard at a time, O(budget) memory) gives exactly what the in-memory
selection gives: the same outcomes, scores.parquet, selected files, report examples and baselines; a
missing or misnumbered shard, or records that do not match the scores, are loud."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import ifd, merge, report
from records import schema, shards, tables, writers
from records.shards import write_shard
from selection.baselines import arm_figures, compare_arms, longest_subset, random_subset

BOUNDS = [(0, 40), (40, 40), (80, 17)]
LABEL = lambda t: ifd.shard_outcomes(t, ifd.IFDSelection(0.1, "ifd_ppl", 1.0, True, None))  # noqa: E731


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


def record_shards(d: Path) -> list[str]:
    """The staged records the score shards belong to (ids ``id<position>``)."""
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for k, (start, n) in enumerate(BOUNDS):
        pos = np.arange(start, start + n)
        t = pa.table({schema.ID: [f"id{p}" for p in pos], schema.POSITION: pos,
                      schema.INSTRUCTION: [f"do {p}" for p in pos], schema.INPUT: [""] * n,
                      schema.OUTPUT: [f"done {p}" for p in pos], schema.HISTORY: pa.nulls(n, pa.string()),
                      schema.ERROR: pa.nulls(n, pa.string()), schema.RAW: [f'{{"row": {p}}}' for p in pos]})
        out.append(str(d / f"part-{k:05d}.parquet"))
        pq.write_table(t, out[-1])
    return out


def streamed(tmp_path: Path, d: Path, sel: ifd.IFDSelection, extra: dict, seed: int = 0):
    recs = record_shards(tmp_path / "records")
    n = sum(b[1] for b in BOUNDS)
    k = ifd.resolve_budget(sel.budget, n)
    label = lambda t: ifd.shard_outcomes(t, sel)  # noqa: E731
    ranked = merge.rank_pass(d, BOUNDS, ifd.derived, label, k, seed, extra)
    order = ranked.order(k)
    show = np.concatenate([order[:8], ranked.below(len(order))])
    paths = merge.OutPaths(tmp_path / "scores.parquet", tmp_path / "selected.jsonl", tmp_path / "selected.parquet")
    written = merge.write_pass(d, BOUNDS, ifd.derived, label, ifd.OUTCOME, order, recs, paths, extra, show)
    lowest = float(ranked.top["key"][: len(order)].min()) if len(order) else None
    info = ifd.describe(sel, k, written.counts, ranked.stats["scored"], ranked.stats["above"], lowest)
    return recs, ranked, written, info, order


@pytest.mark.parametrize("score,budget", [("ifd_ppl", 0.2), ("ifd_loss", 0.2), ("ifd_ppl", 0.9), ("ifd_loss", 1), ("ifd_loss", 97)])
def test_streamed_merge_equals_the_in_memory_one(tmp_path: Path, score: str, budget: float) -> None:
    d = tmp_path / "shards"
    score_shards(d)
    n = sum(b[1] for b in BOUNDS)
    extra = {"duplicate_of": np.where(np.arange(n) % 11 == 4, 0, -1)}
    sel = ifd.IFDSelection(budget, score, 1.0, score == "ifd_loss", None)
    # in memory, as before
    table = tables.validate_complete(shards.load_all(d, len(BOUNDS)), n)
    table = tables.with_columns(table, {**ifd.derived(table), **extra})
    want_table, want, want_info = ifd.select_ifd(table, sel)
    # streamed
    recs, ranked, written, info, order = streamed(tmp_path, d, sel, extra)
    assert order.tolist() == want.order.tolist() and info == want_info
    assert pq.read_table(tmp_path / "scores.parquet").equals(want_table)
    assert written.counts == want_info["outcomes"]
    assert ranked.tokens == int(table.column(schema.PROMPT_TOKENS).to_numpy().sum()
                                + table.column(schema.RESPONSE_TOKENS).to_numpy().sum())
    # the selected files: what the in-memory writers give
    ref = tmp_path / "ref"
    ref.mkdir()
    writers.write_selected(recs, want.order, ref / "selected.jsonl", want_table, ref / "selected.parquet")
    assert (tmp_path / "selected.jsonl").read_text() == (ref / "selected.jsonl").read_text()
    assert pq.read_table(tmp_path / "selected.parquet").equals(pq.read_table(ref / "selected.parquet"))
    # the report's examples and baselines: what the per-row arrays give
    outcome = np.asarray(want_table.column(ifd.OUTCOME).to_pylist(), dtype=object)
    ex = report.pick_examples(outcome, table.column(schema.ERROR).to_pylist(), want_table.column(score).to_numpy())
    assert written.tally == ex.tally
    assert ex.top.tolist() == order[:8].tolist()
    assert ex.below.tolist() == ranked.below(len(order)).tolist()
    for p, why in written.reasons.items():
        assert why == ex.reason[p] and written.scores[p] == pytest.approx(ex.score[p], nan_ok=True)
    valid = ~tables.errored(table)
    k = len(order)
    assert np.sort(ranked.random["pos"][:k]).tolist() == random_subset(valid, k, 0).tolist()
    assert ranked.longest["pos"][:k].tolist() == longest_subset(table.column(schema.RESPONSE_TOKENS).to_numpy(),
                                                                 valid, k).tolist()
    assert ranked.n_valid == int(valid.sum()) and sorted(ranked.sample["pos"].tolist()) == list(range(n))
    # the baseline table: the streamed arms' figures equal the per-row arrays' figures
    lengths, scores = table.column(schema.RESPONSE_TOKENS).to_numpy(), want_table.column(score).to_numpy()
    got = arm_figures(ifd.ReportParts(ranked, written, ifd.resolve_budget(budget, n)).arms("ifd"))
    full = compare_arms(report.baseline_arms("ifd", order, lengths, valid, 0), lengths, valid, scores)
    assert got == full


def test_the_streamed_report_draws_a_sample_of_a_large_pool(tmp_path: Path, monkeypatch) -> None:
    d = tmp_path / "shards"
    score_shards(d)
    monkeypatch.setattr(merge, "SAMPLE_ROWS", 30)
    _, ranked, _, _, _ = streamed(tmp_path, d, ifd.IFDSelection(0.1, "ifd_ppl", 1.0, True, None), {})
    assert len(ranked.sample["pos"]) == 30 and len(np.unique(ranked.sample["pos"])) == 30


def test_ids_that_do_not_match_the_records_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    score_shards(d)
    recs = record_shards(tmp_path / "records")
    t = pq.read_table(recs[1])
    pq.write_table(t.set_column(0, schema.ID, pa.array([f"other{i}" for i in range(t.num_rows)])), recs[1])
    sel = ifd.IFDSelection(0.5, "ifd_ppl", 1.0, True, None)
    label = lambda t: ifd.shard_outcomes(t, sel)  # noqa: E731
    ranked = merge.rank_pass(d, BOUNDS, ifd.derived, label, 40, 0)
    paths = merge.OutPaths(tmp_path / "scores.parquet", tmp_path / "selected.jsonl", tmp_path / "selected.parquet")
    with pytest.raises(RuntimeError, match="do not belong to these scores"):
        merge.write_pass(d, BOUNDS, ifd.derived, label, ifd.OUTCOME, ranked.order(40), recs, paths)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["records", "shards"]  # no output, no temporary


def test_a_missing_or_misnumbered_shard_is_loud(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    score_shards(d)
    (d / "part-00001.done").unlink()
    with pytest.raises(RuntimeError, match=r"\[1\] are not complete"):
        merge.rank_pass(d, BOUNDS, ifd.derived, LABEL, 5, 0)
    score_shards(d)
    with pytest.raises(RuntimeError, match=r"score shard 1 holds 40 rows for input rows 41\.\.80"):
        merge.rank_pass(d, [(0, 40), (41, 40), (81, 17)], ifd.derived, LABEL, 5, 0)
