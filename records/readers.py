"""Input readers: Alpaca JSON arrays, JSONL, ShareGPT / ``messages`` conversations, Parquet.

Every physical input record becomes exactly one normalised row (``schema.RECORD_COLUMNS`` + raw),
valid or carrying an error reason; nothing is dropped here. Conversations are reduced to their
last assistant turn (the response), the user turn before it (the instruction) and everything
earlier (the history, as JSON).
"""

from __future__ import annotations

import base64
import codecs
import datetime
import gzip
import hashlib
import json
import logging
import math
import re
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

from records import schema
from records.json_array import UNPARSED, JsonArraySplitter

log = logging.getLogger(__name__)

FORMATS = ("auto", "json", "jsonl", "parquet", "arrow")
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
    """Format from the extension (``.parquet``, ``.jsonl``/``.ndjson``; ``.json`` is a JSON array, or
    JSON lines when its first value is an object, as Hugging Face writes them), else from the first
    non-blank byte; a clear error otherwise. A UTF-8 BOM is skipped."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".arrow"):
        return "arrow"
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        return "jsonl"
    with reading(path), open_input(path) as f:
        head = f.read(4096).removeprefix(BOM).lstrip()
    if head[:1] == b"[":
        return "json"
    if head[:1] == b"{":
        return "jsonl"
    if name.endswith(".json"):
        return "json"  # the JSON reader names what is wrong with the file
    raise ValueError(
        f"cannot detect the format of {path}: expected a JSON array, JSON lines or "
        f"Parquet; set data.format to one of {', '.join(FORMATS[1:])}"
    )


def open_input(path: Path) -> IO[bytes]:
    """Open an input file for binary reading, transparently gunzipping ``.gz``."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn a file that cannot be read at all (damaged gzip, not Parquet) into one clear error."""
    import pyarrow as pa

    try:
        yield
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{path} is a damaged or truncated gzip file ({e}); nothing was written") from e
    except pa.ArrowInvalid as e:
        raise ValueError(f"{path} is not a readable Parquet file ({e})") from e


def iter_raw(path: Path, fmt: str) -> Iterator[Row]:
    """Yield one :class:`Row` per physical record, with the parsed object or a parse error."""
    readers = {"jsonl": _iter_jsonl, "json": _iter_json_array, "parquet": _iter_parquet, "arrow": _iter_arrow}
    if fmt not in readers:
        raise ValueError(f"unknown data.format {fmt!r}; choose one of {', '.join(FORMATS)}")
    with reading(path):
        yield from readers[fmt](path)


BOM = b"\xef\xbb\xbf"
# a \uD800-\uDFFF escape: only then can a parsed string hold a lone surrogate (checked exactly)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB]")


class _NonFinite(Exception):
    pass


def _constant(name: str) -> float:
    raise _NonFinite(name)


def parse_record(text: str) -> tuple[Any, str | None, str]:
    """(record, error, raw line) for one JSON text. The raw line is the text itself unless it used
    ``NaN``/``Infinity`` (not JSON: re-serialised with null); lone surrogates are ``invalid_utf8``,
    nesting too deep for the parser ``malformed_json``."""
    try:
        try:
            rec = json.loads(text, parse_constant=_constant)
        except _NonFinite:
            rec = json.loads(text)
            text = to_json_line(rec)
    except (json.JSONDecodeError, RecursionError):
        return None, schema.E_MALFORMED, text
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(rec, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return None, schema.E_BAD_UTF8, text
    return rec, None, text


def _iter_jsonl(path: Path) -> Iterator[Row]:
    pos = 0
    with open_input(path) as f:
        for line in f:
            if pos == 0:
                line = line.removeprefix(BOM)
            if not line.strip():
                continue  # blank lines are not records
            try:
                text = line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield Row(pos, line.decode("utf-8", "replace").rstrip("\r\n"), error=schema.E_BAD_UTF8)
                pos += 1
                continue
            rec, err, raw = parse_record(text)
            yield Row(pos, raw, rec, err)
            pos += 1


# bytes read per step from a JSON array file: the splitter holds only the element being read
JSON_CHUNK = 1 << 24


def json_array_elements(path: Path) -> Iterator[str]:
    """The element texts of the JSON array in ``path``, streamed (BOM skipped; a bad byte spoils only
    its own element, which then holds a surrogate escape). A file that is no array is one clear error."""
    for text, _ in json_array_values(path):
        yield text


def json_array_values(path: Path) -> Iterator[tuple[str, Any]]:
    """(element text, its parsed value or ``json_array.UNPARSED``) for every element of ``path``."""
    decode = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode
    splitter = JsonArraySplitter()
    try:
        with open_input(path) as f:
            chunk = f.read(JSON_CHUNK).removeprefix(BOM)
            while chunk:
                for el in splitter.feed(decode(chunk)):
                    yield el, splitter.value
                chunk = f.read(JSON_CHUNK)
            for el in splitter.feed(decode(b"", final=True)):
                yield el, splitter.value
            for el in splitter.close():
                yield el, UNPARSED
    except ValueError as e:
        raise ValueError(
            f"{path}: {e}; use JSON lines, or data.format=jsonl if it holds one record per line"
        ) from e


def _iter_json_array(path: Path) -> Iterator[Row]:
    for i, (el, value) in enumerate(json_array_values(path)):
        try:
            el.encode("utf-8")
        except UnicodeEncodeError:
            raw = el.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            yield Row(i, raw, error=schema.E_BAD_UTF8)
            continue
        if value is UNPARSED or _SURROGATE_ESCAPE.search(el):
            rec, err, _ = parse_record(el)
        else:  # parsed once already, by the splitter's fast path (same decoder, no NaN/Infinity)
            rec, err = value, None
        yield Row(i, el if err else to_json_line(rec), rec, err)


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    pos = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for rec in batch.to_pylist():
            yield Row(pos, to_json_line(rec), rec)
            pos += 1


def arrow_batches(path: Path) -> Iterator[Any]:
    """Record batches of an Arrow IPC file: the stream format ``datasets`` writes, or the file format."""
    import pyarrow as pa

    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
    except pa.ArrowInvalid:
        f = pa.ipc.open_file(pa.memory_map(str(path)))
        for i in range(f.num_record_batches):
            yield f.get_batch(i)
        return
    yield from reader


def _iter_arrow(path: Path) -> Iterator[Row]:
    pos = 0
    for batch in arrow_batches(path):
        for rec in batch.to_pylist():
            yield Row(pos, to_json_line(rec), rec)
            pos += 1


def _json_default(v: Any) -> Any:
    """JSON for what Parquet holds and JSON lacks: bytes as base64 text, dates as ISO 8601."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    return str(v)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def to_json_line(rec: Any) -> str:
    """One line of valid JSON for a record: NaN/Infinity become null, bytes base64 (``selected.jsonl``)."""
    try:
        return json.dumps(rec, ensure_ascii=False, allow_nan=False, default=_json_default)
    except ValueError:
        return json.dumps(_finite(rec), ensure_ascii=False, allow_nan=False, default=_json_default)


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
        role = str(role).strip().lower()
        role = "user" if role in _USER else "assistant" if role in _ASSISTANT else role
        msgs.append({"role": role, "content": content})
    last_a = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=-1)
    last_u = max((i for i, m in enumerate(msgs[: max(last_a, 0)]) if m["role"] == "user"), default=-1)
    if last_a < 0 or last_u < 0:
        return None, schema.E_BAD_CONVERSATION
    return {
        schema.INSTRUCTION: msgs[last_u]["content"],
        schema.INPUT: "",
        schema.OUTPUT: msgs[last_a]["content"],
        schema.HISTORY: json.dumps(msgs[:last_u], ensure_ascii=False) if last_u else "",
    }, None


def _alpaca(rec: dict, f: Fields) -> tuple[dict[str, str] | None, str | None]:
    for name in (f.instruction, f.output):
        if name not in rec or rec[name] is None:
            return None, f"{schema.E_MISSING}:{name}"
    inp = rec.get(f.input, "")
    for name, val in ((f.instruction, rec[f.instruction]), (f.output, rec[f.output]), (f.input, inp)):
        if not isinstance(val, str) and not (name == f.input and val is None):
            return None, f"{schema.E_NOT_STRING}:{name}"
    return {
        schema.INSTRUCTION: rec[f.instruction],
        schema.INPUT: inp or "",
        schema.OUTPUT: rec[f.output],
        schema.HISTORY: "",
    }, None


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
        key = json.dumps(
            [row.fields[k] for k in (schema.INSTRUCTION, schema.INPUT, schema.OUTPUT, schema.HISTORY)],
            ensure_ascii=False,
        )
    else:
        key = "raw:" + row.raw
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]
