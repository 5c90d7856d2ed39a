"""Stage the input: parse it once on the driver into position-ordered Parquet shards.

The shards (``records/part-NNNNN.parquet``) are the deterministic partitioning every later stage
streams through Ray Data: shard ``k`` holds input positions ``[k*S, (k+1)*S)`` where the shard size
``S`` depends only on the row count. The raw record stays in the shards for ``selected.jsonl``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from records.layout import RECORDS_DIR
from records import sources
from records.readers import (
    BOM,
    arrow_batches,
    Fields,
    Row,
    content_hash,
    json_array_elements,
    iter_raw,
    normalise,
    open_input,
    reading,
)
from records import schema
from records.repeats import RepeatFinder
from records.tables import read_positions
from records.writers import write_parquet

log = logging.getLogger(__name__)

_ARROW_SCHEMA = pa.schema(
    [
        (schema.ID, pa.string()),
        (schema.POSITION, pa.int64()),
        (schema.INSTRUCTION, pa.string()),
        (schema.INPUT, pa.string()),
        (schema.OUTPUT, pa.string()),
        (schema.HISTORY, pa.string()),
        (schema.ERROR, pa.string()),
        (schema.RAW, pa.string()),
    ]
)


@dataclass
class Staged:
    """What staging produced: shard paths, row count, input digest and read-stage error counts."""

    shards: list[str]
    n_rows: int
    sha256: str
    format: str
    errors: Counter = field(default_factory=Counter)
    bounds: list[tuple[int, int]] = field(default_factory=list)  # (first position, rows) per shard
    rows_per_shard: int = 0


def scan(path: Path, fmt: str) -> tuple[int, str]:
    """(record count, sha256): of the file's bytes, or for a directory of the parts' names and digests
    in reading order (:mod:`records.sources`)."""
    if path.is_dir():
        h, total = hashlib.sha256(), 0
        for part in sources.parts(path, fmt):
            n, digest = scan_file(part.path, part.format)
            h.update(f"{part.path.relative_to(path).as_posix()}\0{digest}\n".encode())
            total += n
        return total, h.hexdigest()
    return scan_file(path, fmt)


def scan_file(path: Path, fmt: str) -> tuple[int, str]:
    """(record count, sha256 of the file bytes): the bytes are hashed in one streaming pass, then the
    records are counted by the readers' own rule without parsing them."""
    h = hashlib.sha256()
    lines = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    with reading(path):
        if fmt == "parquet":
            lines = pq.ParquetFile(path).metadata.num_rows
        elif fmt == "jsonl":  # the reader's record rule (non-blank lines), without parsing JSON twice
            with open_input(path) as f:
                lines = sum(
                    1 for i, line in enumerate(f) if (line.removeprefix(BOM) if i == 0 else line).strip()
                )
        elif fmt == "json":  # split into elements, not parsed
            lines = sum(1 for _ in json_array_elements(path))
        elif fmt == "arrow":
            lines = sum(b.num_rows for b in arrow_batches(path))
        else:
            raise ValueError(f"unknown data.format {fmt!r}")
    return lines, h.hexdigest()


def shard_size(n_rows: int, min_rows: int = 32, max_rows: int = 4096, target_shards: int = 16) -> int:
    """Rows per shard: about ``target_shards`` shards for small inputs, at most ``max_rows`` rows."""
    return max(min_rows, min(max_rows, math.ceil(max(n_rows, 1) / target_shards)))


def _table(rows: list[Row], ids: list[str]) -> pa.Table:
    cols = {c: [] for c in _ARROW_SCHEMA.names}
    for r, rid in zip(rows, ids):
        cols[schema.ID].append(rid)
        cols[schema.POSITION].append(r.position)
        for k in (schema.INSTRUCTION, schema.INPUT, schema.OUTPUT, schema.HISTORY):
            cols[k].append(r.fields.get(k))
        cols[schema.ERROR].append(r.error)
        cols[schema.RAW].append(r.raw.encode("utf-8", "replace").decode("utf-8"))
    return pa.table(cols, schema=_ARROW_SCHEMA)


@dataclass(frozen=True)
class InputInfo:
    """What staging will produce, known before any shard is written (used to check a resume)."""

    format: str
    n_rows: int
    sha256: str
    rows_per_shard: int


def inspect_input(
    path: Path, fmt: str = "auto", limit: int | None = None, rows_per_shard: int | None = None
) -> InputInfo:
    """Format, row count, digest and shard size of an input file (one streaming pass)."""
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    if limit is not None and limit <= 0:
        raise ValueError(f"data.limit must be a positive row count (or null for all rows), got {limit}")
    ps = sources.parts(path, fmt)
    n_total, digest = scan(path, fmt if path.is_dir() else ps[0].format)
    n_rows = min(n_total, limit) if limit else n_total
    if n_rows == 0:
        raise ValueError(f"no records in {path}: nothing to score")
    return InputInfo(sources.describe(path, ps), n_rows, digest, rows_per_shard or shard_size(n_rows))


def iter_input(path: Path, fmt: str) -> Iterator[Row]:
    """Every record of a file, or of a directory's parts in order, positions numbered across parts."""
    if not path.is_dir():
        yield from iter_raw(path, fmt)
        return
    offset = 0
    for part in sources.parts(path, fmt):
        n = 0
        for row in iter_raw(part.path, part.format):
            row.position += offset
            n += 1
            yield row
        offset += n


def stage_input(
    path: Path,
    out_dir: Path,
    fmt: str = "auto",
    fields: Fields = Fields(),
    drop_duplicates: bool = True,
    limit: int | None = None,
    rows_per_shard: int | None = None,
    info: InputInfo | None = None,
) -> Staged:
    """Parse ``path`` into shards under ``out_dir/records``; every input record becomes one row."""
    info = info or inspect_input(path, fmt, limit, rows_per_shard)
    digest, size = info.sha256, info.rows_per_shard
    read_fmt = fmt if path.is_dir() else info.format  # a directory's parts are detected one by one
    rec_dir = out_dir / RECORDS_DIR
    shutil.rmtree(rec_dir, ignore_errors=True)  # never mix shards of an earlier input
    rec_dir.mkdir(parents=True, exist_ok=True)
    staged = Staged([], 0, digest, info.format, rows_per_shard=size)
    finder = RepeatFinder(info.n_rows, rec_dir / ".ids.spill")
    try:
        buf: list[Row] = []
        for row in iter_input(path, read_fmt):
            if limit and row.position >= limit:
                break
            buf.append(normalise(row, Fields() if fields is None else fields))
            if len(buf) == size:
                _flush(staged, rec_dir, buf, finder)
                buf = []
        if buf:
            _flush(staged, rec_dir, buf, finder)
    except BaseException:
        finder.discard()
        raise
    mark_repeats(staged, *finder.repeats(), drop_duplicates)
    staged.n_rows = sum(staged.errors.values())
    log.info("staged %d rows (%s) into %d shards of <= %d rows", staged.n_rows, info.format, len(staged.shards), size)
    return staged


def _flush(staged: Staged, rec_dir: Path, rows: list[Row], finder: RepeatFinder) -> None:
    """Id every row (its content hash), count outcomes, write the shard; repeats are marked once the
    whole input is read (:func:`mark_repeats`)."""
    ids = [content_hash(r) for r in rows]
    finder.add(ids)
    for row in rows:
        staged.errors[(row.error or "ok").split(":")[0]] += 1
    staged.bounds.append((rows[0].position, len(rows)))
    staged.shards.append(_write(rec_dir, len(staged.shards), rows, ids))


def mark_repeats(staged: Staged, pos: np.ndarray, first: np.ndarray, drop_duplicates: bool) -> None:
    """Rewrite the shards that hold repeats (rows whose content an earlier row had): a repeat's id gets
    ``-<position>`` so ids stay unique and, with ``drop_duplicates``, a row without an error reason
    gets ``duplicate:<first position>``."""
    starts = np.array([b[0] for b in staged.bounds], dtype=np.int64)
    shard_of = np.searchsorted(starts, pos, side="right") - 1
    for k in np.unique(shard_of).tolist():
        here = shard_of == k
        _mark_shard(staged, k, pos[here] - starts[k], first[here], drop_duplicates)


def _mark_shard(staged: Staged, k: int, rows: np.ndarray, first: np.ndarray, drop_duplicates: bool) -> None:
    t = pq.read_table(staged.shards[k])
    ids = t.column(schema.ID).to_pylist()
    errors = t.column(schema.ERROR).to_pylist()
    positions = t.column(schema.POSITION).to_pylist()
    for i, f in zip(rows.tolist(), first.tolist()):
        ids[i] = f"{ids[i]}-{positions[i]}"
        if drop_duplicates and not errors[i]:
            errors[i] = f"{schema.E_DUPLICATE}:{f}"
            staged.errors["ok"] -= 1
            staged.errors[schema.E_DUPLICATE] += 1
    t = t.set_column(t.column_names.index(schema.ID), schema.ID, pa.array(ids, pa.string()))
    t = t.set_column(t.column_names.index(schema.ERROR), schema.ERROR, pa.array(errors, pa.string()))
    write_parquet(t, Path(staged.shards[k]))


def _write(rec_dir: Path, k: int, rows: list[Row], ids: list[str]) -> str:
    path = rec_dir / f"part-{k:05d}.parquet"
    write_parquet(_table(rows, ids), path)
    return str(path)


def subset_rows(staged: Staged, positions: list[int], path: Path) -> Path:
    """Write the staged records at ``positions`` (e.g. training rows) to ``path``, reading only the
    shards that hold them (:func:`records.tables.read_positions`)."""
    rows = read_positions(staged.shards, positions, schema.RECORD_COLUMNS)
    write_parquet(rows.select(schema.RECORD_COLUMNS), path)
    return path


def records_shards(run_dir: Path) -> list[str]:
    """Record shards of a run: always the run's own ``records/`` (a run directory is self-contained,
    so it stays valid when moved or copied)."""
    rec = run_dir / RECORDS_DIR
    shards = sorted(str(p) for p in rec.glob("part-*.parquet"))
    if not shards:
        raise FileNotFoundError(
            f"no input record shards in {rec}: selected.jsonl needs the scoring run's records/"
        )
    return shards
