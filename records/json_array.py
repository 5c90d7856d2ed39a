"""A JSON array's top-level element texts, split without parsing and without holding the file: text
is fed in pieces of any size and each element comes out as soon as its closing comma or bracket
arrives. One damaged or absurdly nested element becomes one bad record instead of failing the file.
Pure text processing (``records.readers`` does the file and the decoding).

Fast path: at each element's start the C JSON decoder reads the element whole (``raw_decode``) and
the splitter checks that only whitespace and a separator follow; the parsed value is kept in
:attr:`JsonArraySplitter.value` for the reader. Anything else (a damaged element, NaN/Infinity, an
element cut by the end of the text fed so far) goes through the tokenizer, which gives the same
element text."""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

# a string token (closed, or running to the end of the text fed so far), or a structural character
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:(?P<close>")|\\?\Z)|[\[\]{},]', re.S)
_SPACE = re.compile(r"\s*")
_END_EMPTY: Any = object()  # an array's closing bracket with no element text before it
UNPARSED = object()  # JsonArraySplitter.value when the last element came through the tokenizer


class _NonFinite(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)  # NaN/Infinity: left to the reader's own rules (the tokenizer path)


_decode = json.JSONDecoder(parse_constant=_refuse_constant).raw_decode


class JsonArraySplitter:
    """Feed text with :meth:`feed` (a string, even an escape, may be cut anywhere), then call
    :meth:`close`. Only the element being read is held. An unterminated array yields its tail as a
    last (malformed) element, data after the array's end is one too, and an unterminated string runs
    to the end of the input."""

    def __init__(self) -> None:
        self.buf = ""
        self.pos = 0  # where scanning resumes in buf
        self.seg = -1  # start of the current element in buf (-1: the array's "[" not seen yet)
        self.depth = 0
        self.closed = False
        self.value: Any = UNPARSED  # the parsed value of the element last yielded, when the fast path read it

    def feed(self, text: str) -> Iterator[str]:
        self.buf += text
        if self.seg < 0 and not self._open():
            return
        while not self.closed:
            if self.depth == 1 and self.pos == self.seg:  # at an element's start
                fast = self._fast()
                if fast is not None:
                    yield fast
                    continue
            self.value = UNPARSED
            out = self._scan()
            if out is None:  # the element goes on in the next piece
                self._trim()
                return
            if out is not _END_EMPTY:
                yield out

    def _fast(self) -> str | None:
        """The element at ``pos`` read by the C decoder, or None (then the tokenizer reads it)."""
        buf = self.buf
        start = _SPACE.match(buf, self.pos).end()
        if start >= len(buf) or buf[start] == "]":
            return None
        try:
            value, end = _decode(buf, start)
        except (ValueError, RecursionError, _NonFinite):
            return None
        after = _SPACE.match(buf, end).end()
        if after >= len(buf) or buf[after] not in ",]":
            return None
        self.value = value
        if buf[after] == "]":
            self.closed = True
            self.depth = 0
            self.buf, self.pos, self.seg = buf[after + 1 :], 0, 0
        else:
            self.pos = self.seg = after + 1
        return buf[start:end]

    def _scan(self) -> str | None:
        """Tokenise from ``pos`` to the current element's end: its text (``_END_EMPTY`` at the end of
        an array with nothing before the bracket), or None when the text fed so far ends first."""
        for m in _TOKEN.finditer(self.buf, self.pos):
            t = m.group()
            if t[0] == '"':
                if m.group("close") is None:  # the string goes on in the next piece
                    self.pos = m.start()
                    return None
                continue
            if t in "[{":
                self.depth += 1
            elif t in "]}":
                self.depth -= 1
                if self.depth == 0:
                    last = self.buf[self.seg : m.start()].strip()
                    self.closed = True
                    self.buf, self.pos, self.seg = self.buf[m.end() :], 0, 0
                    return last or _END_EMPTY
            elif self.depth == 1:  # a comma between elements
                out = self.buf[self.seg : m.start()].strip()
                self.pos = self.seg = m.end()
                return out
        self.pos = len(self.buf)
        return None

    def close(self) -> Iterator[str]:
        """What is left at the end of the input, as one element (nothing for a well-formed array)."""
        if self.seg < 0:
            raise ValueError("expected a JSON array of records")
        tail = self.buf[self.seg :].strip()
        if tail:
            yield tail

    def _open(self) -> bool:
        """Skip whitespace up to the array's ``[``; False while only whitespace has been seen."""
        body = self.buf.lstrip()
        if not body:
            self.buf = ""
            return False
        if not body.startswith("["):
            raise ValueError("expected a JSON array of records")
        self.buf, self.pos, self.seg, self.depth = body, 1, 1, 1
        return True

    def _trim(self) -> None:
        if self.seg > 0:
            self.buf, self.pos, self.seg = self.buf[self.seg :], self.pos - self.seg, 0


def split_json_array(text: str) -> Iterator[str]:
    """The element texts of a JSON array held whole in ``text``."""
    sp = JsonArraySplitter()
    yield from sp.feed(text)
    yield from sp.close()
