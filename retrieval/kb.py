"""Knowledge-base rows: trusted examples (instruction/input/output or messages) or plain paragraphs.

A record with a non-empty string ``text`` field (configurable) is a paragraph; anything else is read
as an example with the same field mapping as the pool. Example ids are the pool's content hash, so a
pool row that also sits in the KB can be recognised and never retrieves itself.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from records.first_seen import FirstSeen
from records.readers import Fields, Row, content_hash, normalise
from records.staging import iter_input
from records import schema

KB_ID = "kb_id"
KIND = "kind"
TEXT = "text"
QUERY = "query"
KB_COLUMNS = [KB_ID, schema.POSITION, KIND, schema.INSTRUCTION, schema.INPUT, schema.OUTPUT,
              schema.HISTORY, TEXT, QUERY]


def query_text(instruction: str, input_: str) -> str:
    """What retrieval embeds for an example or a pool row: the instruction, then the input."""
    return f"{instruction}\n{input_}" if input_ else instruction


@dataclass
class KBRead:
    """KB rows that can be indexed, plus what was rejected and why (nothing vanishes silently)."""

    rows: list[dict[str, object]]
    rejected: dict[str, int]
    examples: list[tuple[int, str]]  # (position, reason) of the first rejections


def kb_row(row: Row, fields: Fields, text_field: str) -> dict[str, object] | str:
    """One KB record as a KB row, or the reason it cannot be used."""
    if row.error:
        return row.error
    rec = row.record
    if isinstance(rec, dict) and isinstance(rec.get(text_field), str):
        text = rec[text_field].strip()
        if not text:
            return "empty_text"
        kid = hashlib.sha256(("text:" + text).encode("utf-8", "surrogatepass")).hexdigest()[:20]
        return {KB_ID: kid, schema.POSITION: row.position, KIND: "paragraph", schema.INSTRUCTION: "",
                schema.INPUT: "", schema.OUTPUT: "", schema.HISTORY: "", TEXT: text, QUERY: text}
    row = normalise(row, fields)
    if row.error:
        return row.error.split(":")[0] if row.error.startswith(schema.E_DUPLICATE) else row.error
    f = row.fields
    return {KB_ID: content_hash(row), schema.POSITION: row.position, KIND: "example",
            schema.INSTRUCTION: f[schema.INSTRUCTION], schema.INPUT: f[schema.INPUT],
            schema.OUTPUT: f[schema.OUTPUT], schema.HISTORY: f[schema.HISTORY], TEXT: "",
            QUERY: query_text(f[schema.INSTRUCTION], f[schema.INPUT])}


def read_kb(path: Path, fmt: str, fields: Fields, text_field: str = "text",
            limit: int | None = None) -> KBRead:
    """All usable KB rows of ``path`` (exact duplicates kept once), with rejection counts."""
    out = KBRead([], {}, [])
    for chunk in iter_kb(path, fmt, fields, text_field, limit, out):
        out.rows.extend(chunk)
    return out


def iter_kb(path: Path, fmt: str, fields: Fields, text_field: str, limit: int | None, tally: KBRead,
            chunk: int = 4096) -> Iterator[list[dict[str, object]]]:
    """The usable KB rows of ``path`` in chunks of up to ``chunk`` (exact duplicates kept once, checked
    in a compact first-seen index); rejections are counted into ``tally`` as they are met."""
    seen = FirstSeen(chunk)
    buf: list[dict[str, object]] = []
    for row in _rows(path, fmt, limit):
        r = kb_row(row, fields, text_field)
        if isinstance(r, str):
            _reject(tally, row.position, r)
            continue
        buf.append(r)
        if len(buf) == chunk:
            kept, buf = _first_copies(buf, seen, tally), []
            if kept:
                yield kept
    kept = _first_copies(buf, seen, tally)
    if kept:
        yield kept


def _reject(tally: KBRead, position: int, reason: str) -> None:
    key = reason.split(":")[0]
    tally.rejected[key] = tally.rejected.get(key, 0) + 1
    if len(tally.examples) < 20:
        tally.examples.append((position, reason))


def _first_copies(buf: list[dict[str, object]], seen: FirstSeen, tally: KBRead) -> list[dict[str, object]]:
    """The rows of ``buf`` whose id was not seen before (by source position); the others are rejected."""
    own = np.array([int(r[schema.POSITION]) for r in buf], dtype=np.int64)  # type: ignore[call-overload]
    first = seen.first([str(r[KB_ID]) for r in buf], own)
    kept = []
    for r, f, mine in zip(buf, first.tolist(), own.tolist()):
        if f != mine:
            _reject(tally, mine, schema.E_DUPLICATE)
        else:
            kept.append(r)
    return kept


def _rows(path: Path, fmt: str, limit: int | None) -> Iterator[Row]:
    for row in iter_input(path, fmt):
        if limit and row.position >= limit:
            return
        yield row


def history(row: dict[str, object]) -> list[dict[str, str]]:
    raw = row.get(schema.HISTORY) or ""
    return json.loads(str(raw)) if raw else []
