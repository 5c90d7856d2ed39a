"""The driver's merge of score shards, streamed: one shard in memory at a time and nothing kept per
row, so the driver's memory does not grow with the pool (a 10M-row run holds what a 1M-row one does,
plus the budget's positions).

Pass 1 (:func:`rank_pass`) checks each committed shard holds exactly its input rows, labels every row
with its outcome before the budget (a method's :data:`Label`) and keeps, in O(budget) memory, the best
competing rows (:class:`selection.topk.TopK`), the report's two baselines (the longest responses and
a seeded random draw, both over valid rows) and a fixed-size uniform sample of the pool for the plots.
Pass 2 (:func:`write_pass`) reads the shards again beside their record shards and writes
``scores.parquet`` (every score column, the derived ones and the outcome), ``selected.jsonl`` and
``selected.parquet`` row group by row group, counting outcomes and keeping the first example rows of
every reason.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from records import schema, shards, tables
from records.writers import SELECTED_RECORD, selected_rows
from selection.baselines import random_keys
from selection.topk import DROP_BUDGET, KEPT, TopK

Derive = Callable[[pa.Table], dict[str, np.ndarray]]
# a shard's table -> (selection score, outcome per row before the budget: DROP_BUDGET where the row
# competes for it, else its drop reason, and counts the method reports, e.g. rows above a threshold)
Label = Callable[[pa.Table], tuple[np.ndarray, np.ndarray, dict[str, int]]]

SAMPLE_ROWS = 100_000  # the pool's plots draw a uniform sample of this many rows (all rows below it)
BELOW = 8  # rows "just below the cut" the report shows
PER_REASON = 3  # example rows per outcome / drop reason
GROUP_ROWS = {"scores": 1 << 16, "table": 1 << 13}  # rows per Parquet row group of scores / selected


@dataclass
class Ranked:
    """What pass 1 keeps: counts, and top-k accumulators whose size depends on the budget only."""

    n_rows: int = 0
    n_valid: int = 0  # rows without an error reason (the baselines draw from them)
    tokens: int = 0  # prompt + response tokens over the pool (the manifest's approx_tokens_scored)
    stats: Counter = field(default_factory=Counter)
    top: dict[str, np.ndarray] = field(default_factory=dict)  # competing rows by score: key, pos, length
    longest: dict[str, np.ndarray] = field(default_factory=dict)  # valid rows by response tokens (+ score)
    random: dict[str, np.ndarray] = field(default_factory=dict)  # valid rows by random_keys(seed) (+ both)
    sample: dict[str, np.ndarray] = field(default_factory=dict)  # a uniform sample: pos, score, length
    others: dict[str, np.ndarray] = field(default_factory=dict)  # the best valid rows a filter dropped

    def order(self, k: int) -> np.ndarray:
        """The selected positions, best first."""
        return self.top["pos"][:k]

    def below(self, k: int) -> np.ndarray:
        """The best-ranked rows not selected: those the budget left out, or where it left none out, the
        best valid rows a filter dropped (as :func:`jobs.report.pick_examples` picks them)."""
        left = self.top["pos"][k:]
        return left if len(left) else self.others["pos"]


def near_copies(table: pa.Table) -> np.ndarray:
    """Rows a semantic dedup step marked as copies (``duplicate_of`` ≥ 0); none without that column."""
    if "duplicate_of" not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    return table.column("duplicate_of").to_numpy(zero_copy_only=False) >= 0


def _with_extra(t: pa.Table, derive: Derive, extra: dict[str, np.ndarray] | None, start: int) -> pa.Table:
    cols = dict(derive(t))
    for name, values in (extra or {}).items():
        cols[name] = np.asarray(values)[start : start + t.num_rows]
    return tables.with_columns(t, cols)


def _tables(shard_dir: Path, bounds: list[tuple[int, int]], derive: Derive,
            extra: dict[str, np.ndarray] | None) -> Iterator[tuple[int, pa.Table]]:
    for (start, _), t in zip(bounds, shards.iter_shards(shard_dir, bounds)):
        yield start, _with_extra(t, derive, extra, start)


def rank_pass(
    shard_dir: Path, bounds: list[tuple[int, int]], derive: Derive, label: Label, k: int, seed: int,
    extra: dict[str, np.ndarray] | None = None,
) -> Ranked:
    """Pass 1 over the committed shards of ``shard_dir`` (one per input shard, ``bounds[k] = (first
    position, rows)``); a missing, short or misnumbered shard is a loud error."""
    r = Ranked()
    top, longest = TopK(k + BELOW, ("length",)), TopK(k, ("score",))
    rand = TopK(k, ("score", "length"))
    sample = TopK(SAMPLE_ROWS, ("score", "length"))
    others = TopK(BELOW)
    for start, t in _tables(shard_dir, bounds, derive, extra):
        score, outcome, stats = label(t)
        pos = np.arange(start, start + t.num_rows)
        valid = ~tables.errored(t)
        length = t.column(schema.RESPONSE_TOKENS).to_numpy().astype(np.int32)
        r.n_rows += t.num_rows
        r.n_valid += int(valid.sum())
        r.tokens += int(length.sum(dtype=np.int64) + t.column(schema.PROMPT_TOKENS).to_numpy().sum())
        r.stats.update(stats)
        compete = outcome == DROP_BUDGET
        top.add(score[compete], pos[compete], length=length[compete])
        other = valid & ~compete & np.isfinite(score)
        others.add(score[other], pos[other])
        longest.add(length[valid].astype(np.float64), pos[valid], score=score[valid])
        rand.add(random_keys(pos[valid], seed), pos[valid], score=score[valid], length=length[valid])
        sample.add(random_keys(pos, seed + 1), pos, score=score, length=length)
    r.top, r.longest, r.random, r.sample = top.result(), longest.result(), rand.result(), sample.result()
    r.others = others.result()
    return r


@dataclass
class Written:
    """What pass 2 counted: rows per outcome, and per reason (the error reason where a row has one,
    else its outcome) the row count and its first :data:`PER_REASON` positions."""

    counts: dict[str, int]
    tally: dict[str, tuple[int, list[int]]]
    reasons: dict[int, str]  # the reason of every example row (and of every row of ``show``)
    scores: dict[int, float]  # and its selection score


@dataclass
class OutPaths:
    """Where pass 2 writes."""

    scores: Path
    selected: Path
    table: Path


class _Tally:
    """Outcome counts and example rows, a shard at a time (vectorised: no Python loop over rows)."""

    def __init__(self, show: np.ndarray) -> None:
        self.counts: Counter = Counter()
        self.per_reason: Counter = Counter()
        self.first: dict[str, list[int]] = {}
        self.reasons: dict[int, str] = {}
        self.scores: dict[int, float] = {}
        self.show = np.sort(np.asarray(show, dtype=np.int64))

    def add(self, start: int, outcome: np.ndarray, error: pa.ChunkedArray, score: np.ndarray) -> None:
        self.counts.update(outcome.tolist())
        reason = outcome.copy()
        bad = np.flatnonzero(error.is_valid().to_numpy(zero_copy_only=False))
        if len(bad):
            reason[bad] = error.take(pa.array(bad)).to_pylist()
        here = Counter(reason.tolist())
        self.per_reason.update(here)
        rows: list[int] = []
        for why in here:
            need = PER_REASON - len(self.first.setdefault(why, []))
            if need > 0:  # until a reason has its examples (usually within the first shard)
                got = np.flatnonzero(reason == why)[:need]
                self.first[why] += (got + start).tolist()
                rows += got.tolist()
        lo, hi = np.searchsorted(self.show, [start, start + len(outcome)])
        rows += (self.show[lo:hi] - start).tolist()
        for i in rows:
            self.reasons[start + i] = str(reason[i])
            self.scores[start + i] = float(score[i])

    def written(self) -> Written:
        tally = {str(why): (n, self.first[why]) for why, n in self.per_reason.items()}
        return Written(dict(sorted((str(k), v) for k, v in self.counts.items())), tally, self.reasons, self.scores)


def write_pass(
    shard_dir: Path, bounds: list[tuple[int, int]], derive: Derive, label: Label, outcome_col: str,
    selected: np.ndarray, record_shards: list[str], paths: OutPaths,
    extra: dict[str, np.ndarray] | None = None, show: np.ndarray | None = None,
) -> Written:
    """Pass 2: ``scores.parquet`` (with ``outcome_col``: KEPT at ``selected`` positions, else the
    label), ``selected.jsonl`` (the raw records, input order) and ``selected.parquet`` (their record
    columns and every score column), each written under a temporary name and renamed when complete.
    Each selected record's id must be the id its scores hold; anything else is a loud error."""
    want = np.sort(np.asarray(selected, dtype=np.int64))
    tally = _Tally(np.zeros(0) if show is None else show)
    out = _Writers(paths)
    try:
        for k, (start, t) in enumerate(_tables(shard_dir, bounds, derive, extra)):
            score, outcome, _ = label(t)
            lo, hi = np.searchsorted(want, [start, start + t.num_rows])
            outcome[want[lo:hi] - start] = KEPT
            t = tables.with_columns(t, {outcome_col: outcome})
            tally.add(start, outcome, t.column(schema.ERROR), score)
            out.scores(t)
            if hi > lo:
                out.selected(record_shards[k], t.take(pa.array(want[lo:hi] - start)))
        out.close(len(want), t.slice(0, 0))
    finally:
        out.discard()
    return tally.written()


class _Writers:
    """The three output files of pass 2, streamed (temporary names until :meth:`close`). Parquet rows
    are written in row groups of about :data:`GROUP_ROWS`: a writer keeps every row group's metadata
    until it closes, so one small group per shard would grow with the pool."""

    def __init__(self, paths: OutPaths) -> None:
        self.paths = paths
        self.tmp = {n: p.with_name(p.name + ".tmp") for n, p in vars(paths).items()}
        self.jsonl = open(self.tmp["selected"], "w", encoding="utf-8")
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.pending: dict[str, list[pa.Table]] = {"scores": [], "table": []}
        self.n = 0

    def _parquet(self, name: str, t: pa.Table, flush: bool = False) -> None:
        self.pending[name].append(t)
        if flush or sum(p.num_rows for p in self.pending[name]) >= GROUP_ROWS[name]:
            if name not in self.writers:
                numeric = [f.name for f in t.schema if not pa.types.is_string(f.type)]
                self.writers[name] = pq.ParquetWriter(self.tmp[name], t.schema, write_statistics=numeric)
            w = self.writers[name]
            w.write_table(pa.concat_tables([p.cast(w.schema) for p in self.pending[name]]))
            self.pending[name] = []

    def scores(self, t: pa.Table) -> None:
        self._parquet("scores", t)

    def selected(self, record_shard: str, picked: pa.Table) -> None:
        rec = tables.read_positions([record_shard], picked.column(schema.POSITION).to_numpy(), SELECTED_RECORD + [schema.RAW])
        if not rec.column(schema.ID).equals(picked.column(schema.ID)):
            raise RuntimeError(
                f"the records in {Path(record_shard).parent} do not belong to these scores (ids differ); "
                f"refusing to write {self.paths.selected.name}"
            )
        self.jsonl.write("".join(raw + "\n" for raw in rec.column(schema.RAW).to_pylist()))
        self.n += rec.num_rows
        self._parquet("table", selected_rows(rec, picked))

    def close(self, n_selected: int, empty_scores: pa.Table) -> None:
        self.jsonl.close()
        if self.n != n_selected:
            raise RuntimeError(f"{n_selected} rows were selected but {self.n} records were found; "
                               f"refusing to write {self.paths.selected.name}")
        if "table" not in self.writers and not self.pending["table"]:  # nothing selected: no rows, every column
            empty = pa.table({c: pa.array([], pa.int64() if c == schema.POSITION else pa.string()) for c in SELECTED_RECORD})
            self.pending["table"].append(selected_rows(empty, empty_scores))
        for name, parts in self.pending.items():
            if parts:
                self._parquet(name, parts.pop(), flush=True)
        for w in self.writers.values():
            w.close()
        self.writers = {}
        for name, tmp in self.tmp.items():
            tmp.replace(getattr(self.paths, name))

    def discard(self) -> None:
        """After a failure: close and remove the temporary files (nothing of the outputs changed)."""
        if not self.jsonl.closed:
            self.jsonl.close()
        for w in self.writers.values():
            w.close()
        for tmp in self.tmp.values():
            tmp.unlink(missing_ok=True)
