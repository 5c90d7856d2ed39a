"""A JSON array's top-level element texts, split without parsing and without holding the file: text
is fed in pieces of any size and each element comes out as soon as its closing comma or bracket
arrives. One damaged or absurdly nested element becomes one bad record instead of failing the file.
Pure text processing (``records.readers`` does the file and the decoding)."""
from __future__ import annotations

import re
from typing import Iterator

# a string token (closed, or running to the end of the text fed so far), or a structural character
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:(?P<close>")|\\?\Z)|[\[\]{},]', re.S)


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

    def feed(self, text: str) -> Iterator[str]:
        self.buf += text
        if self.seg < 0 and not self._open():
            return
        if self.closed:
            return
        for m in _TOKEN.finditer(self.buf, self.pos):
            t = m.group()
            if t[0] == '"':
                if m.group("close") is None:  # the string goes on in the next piece
                    self.pos = m.start()
                    self._trim()
                    return
                continue
            if t in "[{":
                self.depth += 1
            elif t in "]}":
                self.depth -= 1
                if self.depth == 0:
                    last = self.buf[self.seg : m.start()].strip()
                    if last:
                        yield last
                    self.closed = True
                    self.buf, self.pos, self.seg = self.buf[m.end() :], 0, 0
                    return
            elif self.depth == 1:  # a comma between elements
                yield self.buf[self.seg : m.start()].strip()
                self.seg = m.end()
        self.pos = len(self.buf)
        self._trim()

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
