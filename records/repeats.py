"""Exact repeats over a stream of millions of rows in about 1.25 bytes of memory a row.

Staging must find every row whose content id an earlier row already had, and name that earlier row.
An in-memory table of every id (:class:`records.first_seen.FirstSeen`, 14 bytes a row) grows with
the pool; here the ids go to a spill file on disk (10 bytes a row, in position order) and memory
holds only a Bloom filter (10 bits a row, 7 probes: about 1% false positives). A row whose id the
filter may have seen before, or that repeats an id earlier in its own batch, becomes a *candidate*.
After the stream one sequential read of the spill file finds, for every candidate id, all of its rows
in order, so each repeat gets its exact first position. Memory: the filter plus the candidates (about
1% of the rows plus the repeats themselves). False positives cost a little of that read, never a
wrong answer: ids are compared on all 80 bits (``first_seen.split_ids``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from records.first_seen import FirstSeen, split_ids

BITS_PER_ROW = 10
PROBES = 7
SPILL = np.dtype([("key", "<u8"), ("tag", "<u2")])
READ_ROWS = 1 << 20  # spill rows per read in the final pass (10 MB)


class RepeatFinder:
    """Feed ids in position order (:meth:`add`), then :meth:`repeats` once. ``spill`` is a file
    this class creates and removes."""

    def __init__(self, expected_rows: int, spill: Path) -> None:
        bits = 1 << max(13, int(np.ceil(np.log2(max(expected_rows, 1) * BITS_PER_ROW))))
        self.mask = np.uint64(bits - 1)
        self.filter = np.zeros(bits // 8, dtype=np.uint8)
        self.spill = spill
        self._file = open(spill, "wb")
        self.rows = 0
        self._cand: list[np.ndarray] = []  # candidate keys (64-bit part; the tag is checked in the final pass)

    def add(self, ids: list[str]) -> None:
        """The ids of the next ``len(ids)`` rows."""
        if not ids:
            return
        key, tag = split_ids(ids)
        rec = np.empty(len(ids), dtype=SPILL)
        rec["key"], rec["tag"] = key, tag
        self._file.write(rec.tobytes())
        self.rows += len(ids)
        maybe = self._probe(key)
        pair = key ^ (tag.astype(np.uint64) << np.uint64(48))
        _, first = np.unique(pair, return_index=True)
        again = np.ones(len(ids), dtype=bool)
        again[first] = False  # a repeat of an id earlier in this batch
        cand = key[maybe | again]
        if len(cand):
            self._cand.append(cand)

    def _slots(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        step = (key >> np.uint64(32)) | np.uint64(1)  # double hashing over a uniform 64-bit key
        with np.errstate(over="ignore"):
            idx = (key[:, None] + np.arange(PROBES, dtype=np.uint64)[None, :] * step[:, None]) & self.mask
        return (idx >> np.uint64(3)).astype(np.int64), (np.uint8(1) << (idx & np.uint64(7)).astype(np.uint8))

    def _probe(self, key: np.ndarray) -> np.ndarray:
        """Whether each key may have been added before (checked for all, then all are set)."""
        byte, bit = self._slots(key)
        maybe = ((self.filter[byte] & bit) != 0).all(axis=1)
        np.bitwise_or.at(self.filter, byte.ravel(), bit.ravel())
        return maybe

    def repeats(self) -> tuple[np.ndarray, np.ndarray]:
        """(position, first position) of every row whose id an earlier row had, in position order;
        removes the spill file."""
        self._file.close()
        try:
            cand = np.unique(np.concatenate(self._cand)) if self._cand else np.zeros(0, np.uint64)
            self._cand = []
            return self._scan(cand)
        finally:
            self.spill.unlink(missing_ok=True)

    def _scan(self, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos_out, first_out = [], []
        if not len(cand):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        seen = FirstSeen(len(cand))
        with open(self.spill, "rb") as f:
            start = 0
            while True:
                rec = np.fromfile(f, dtype=SPILL, count=READ_ROWS)
                if not len(rec):
                    break
                at = np.searchsorted(cand, rec["key"])
                hit = np.flatnonzero(cand[np.minimum(at, len(cand) - 1)] == rec["key"])
                if len(hit):
                    pos = start + hit
                    first = seen.first_keys(rec["key"][hit], rec["tag"][hit], pos)
                    again = first != pos
                    pos_out.append(pos[again])
                    first_out.append(first[again])
                start += len(rec)
        if not pos_out:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(pos_out).astype(np.int64), np.concatenate(first_out).astype(np.int64)

    def discard(self) -> None:
        """After a failure: close and remove the spill file."""
        self._file.close()
        self.spill.unlink(missing_ok=True)
