"""Input readers: Alpaca JSON arrays, JSONL, ShareGPT / ``messages`` conversations, Parquet.

Every physical input record becomes exactly one normalised row (``schema.RECORD_COLUMNS`` + raw),
valid or carrying an error reason; nothing is dropped here. Conversations are reduced to their
last assistant turn (the response), the user turn before it (the instruction) and everything
earlier (the history, as JSON).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

from scoring import schema

log = logging.getLogger(__name__)

FORMATS = ("auto", "json", "jsonl", "parquet")
_USER = {"user", "human"}
_ASSISTANT = {"assistant", "gpt", "chatgpt", "bard", "bing", "model"}


@dataclass(frozen=True)
class Fields:
    """Names of the record fields (configurable per dataset)."""

    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"
    conversation: tuple[str, ...] = ("messages", "conversations")
    role_keys: tuple[str, ...] = ("role", "from")
    content_keys: tuple[str, ...] = ("content", "value")


@dataclass
class Row:
    position: int
    raw: str
    record: Any = None
    error: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


def detect_format(path: Path) -> str:
    """Format from the extension, else from the first non-blank byte; a clear error otherwise."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        return "jsonl"
    with open_input(path) as f:
        head = f.read(4096).lstrip()
    if head[:1] == b"[":
        return "json"
    if head[:1] == b"{":
        return "jsonl"
    raise ValueError(f"cannot detect the format of {path}: expected a JSON array, JSON lines or "
                     f"Parquet; set data.format to one of {', '.join(FORMATS[1:])}")


def open_input(path: Path) -> IO[bytes]:
    """Open an input file for binary reading, transparently gunzipping ``.gz``."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def iter_raw(path: Path, fmt: str) -> Iterator[Row]:
    """Yield one :class:`Row` per physical record, with the parsed object or a parse error."""
    if fmt == "jsonl":
        yield from _iter_jsonl(path)
    elif fmt == "json":
        with open_input(path) as f:
            try:
                data = json.loads(f.read().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"{path} is not a valid JSON array ({e}); use JSON lines to keep "
                                 f"the valid records of a damaged file") from e
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
        for i, rec in enumerate(data):
            yield Row(i, json.dumps(rec, ensure_ascii=False), rec)
    elif fmt == "parquet":
        yield from _iter_parquet(path)
    else:
        raise ValueError(f"unknown data.format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _iter_jsonl(path: Path) -> Iterator[Row]:
    pos = 0
    with open_input(path) as f:
        for line in f:
            if not line.strip():
                continue  # blank lines are not records
            try:
                text = line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield Row(pos, line.decode("utf-8", "replace").rstrip("\r\n"), error=schema.E_BAD_UTF8)
                pos += 1
                continue
            try:
                yield Row(pos, text, json.loads(text))
            except json.JSONDecodeError:
                yield Row(pos, text, error=schema.E_MALFORMED)
            pos += 1


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    pos = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for rec in batch.to_pylist():
            yield Row(pos, json.dumps(rec, ensure_ascii=False, default=str), rec)
            pos += 1


def _first(d: dict, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def _conversation(turns: Any, f: Fields) -> tuple[dict[str, str] | None, str | None]:
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        return None, schema.E_BAD_CONVERSATION
    msgs = []
    for t in turns:
        role, content = _first(t, f.role_keys), _first(t, f.content_keys)
        if not isinstance(content, str):
            return None, f"{schema.E_NOT_STRING}:content"
        role = "user" if role in _USER else "assistant" if role in _ASSISTANT else str(role)
        msgs.append({"role": role, "content": content})
    last_a = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=-1)
    last_u = max((i for i, m in enumerate(msgs[: max(last_a, 0)]) if m["role"] == "user"), default=-1)
    if last_a < 0 or last_u < 0:
        return None, schema.E_BAD_CONVERSATION
    return {schema.INSTRUCTION: msgs[last_u]["content"], schema.INPUT: "",
            schema.OUTPUT: msgs[last_a]["content"],
            schema.HISTORY: json.dumps(msgs[:last_u], ensure_ascii=False) if last_u else ""}, None


def _alpaca(rec: dict, f: Fields) -> tuple[dict[str, str] | None, str | None]:
    for name in (f.instruction, f.output):
        if name not in rec or rec[name] is None:
            return None, f"{schema.E_MISSING}:{name}"
    inp = rec.get(f.input, "")
    for name, val in ((f.instruction, rec[f.instruction]), (f.output, rec[f.output]), (f.input, inp)):
        if not isinstance(val, str) and not (name == f.input and val is None):
            return None, f"{schema.E_NOT_STRING}:{name}"
    return {schema.INSTRUCTION: rec[f.instruction], schema.INPUT: inp or "",
            schema.OUTPUT: rec[f.output], schema.HISTORY: ""}, None


def normalise(row: Row, f: Fields) -> Row:
    """Fill ``row.fields`` (instruction/input/output/history) or set ``row.error``."""
    if row.error:
        return row
    rec = row.record
    if not isinstance(rec, dict):
        row.error = schema.E_NOT_OBJECT
        return row
    conv = _first(rec, f.conversation)
    fields, err = _conversation(conv, f) if conv is not None else _alpaca(rec, f)
    if err is None and not fields[schema.OUTPUT].strip():
        err = schema.E_EMPTY_RESPONSE
    row.fields, row.error = fields or {}, err
    return row


def content_hash(row: Row) -> str:
    """Stable id: sha256 of the normalised content (or of the raw text for unparseable rows)."""
    if row.fields:
        key = json.dumps([row.fields[k] for k in (schema.INSTRUCTION, schema.INPUT, schema.OUTPUT,
                                                  schema.HISTORY)], ensure_ascii=False)
    else:
        key = "raw:" + row.raw
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]
