"""Where each content id was first seen: an exact duplicate check over millions of rows in about
14 bytes a row (numpy open addressing), where a ``dict[str, int]`` costs about 200.

Ids are Winnow's 20-hex-digit content hashes (80 bits, ``readers.content_hash``); all 80 bits are
compared (a 64-bit key plus a 16-bit tag), so two different rows are taken for duplicates only on a
full 80-bit collision (about 4e-11 for 10M rows). Lookups and inserts run a whole shard's ids at once
(linear probing, vectorised); the capacity is sized from the row count known before staging and
doubles if more ids arrive.
"""
from __future__ import annotations

import numpy as np

MAX_LOAD = 0.7


def split_ids(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit key, 16-bit tag) of each 20-hex-digit id."""
    key = np.array([int(i[:16], 16) for i in ids], dtype=np.uint64)
    tag = np.array([int(i[16:20], 16) for i in ids], dtype=np.uint16)
    return key, tag


class FirstSeen:
    """Content id → position of its first row."""

    def __init__(self, expected_rows: int = 0) -> None:
        cap = 1 << max(10, int(np.ceil(np.log2(max(expected_rows, 1) / MAX_LOAD))))
        self.pos_type = np.int32 if expected_rows < 2**31 - 1 else np.int64
        self._alloc(cap)

    def _alloc(self, cap: int) -> None:
        self.key = np.zeros(cap, dtype=np.uint64)
        self.tag = np.zeros(cap, dtype=np.uint16)
        self.pos = np.full(cap, -1, dtype=self.pos_type)
        self.used = 0

    def __len__(self) -> int:
        return self.used

    def first(self, ids: list[str], positions: np.ndarray) -> np.ndarray:
        """For each id in order: the position of the first row with that id, counting earlier calls
        and earlier rows of this call (a new id's own position); records the new ones."""
        if len(ids) == 0:
            return np.asarray(positions, dtype=np.int64).copy()
        return self.first_keys(*split_ids(ids), positions)

    def first_keys(self, key: np.ndarray, tag: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """:meth:`first` for ids already split into (64-bit key, 16-bit tag) arrays."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) == 0:
            return positions.copy()
        if positions.max() >= np.iinfo(self.pos_type).max:
            self.pos = self.pos.astype(np.int64)
            self.pos_type = np.int64
        pair = np.stack([key, tag.astype(np.uint64)], axis=1)
        _, first_idx, inverse = np.unique(pair, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        while (self.used + len(first_idx)) > MAX_LOAD * len(self.key):
            self._grow()
        found = self._lookup_insert(key[first_idx], tag[first_idx], positions[first_idx])
        return found[inverse]

    def _grow(self) -> None:
        occupied = self.pos >= 0
        key, tag, pos = self.key[occupied], self.tag[occupied], self.pos[occupied].astype(np.int64)
        self._alloc(2 * len(self.key))
        self._lookup_insert(key, tag, pos)

    def _lookup_insert(self, key: np.ndarray, tag: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Stored position of each (distinct) key; keys not present are inserted with ``pos``."""
        mask = np.uint64(len(self.key) - 1)
        slot = (key & mask).astype(np.int64)
        out = np.empty(len(key), dtype=np.int64)
        pending = np.arange(len(key))
        while len(pending):
            s = slot[pending]
            held = self.pos[s]
            occupied = held >= 0
            match = occupied & (self.key[s] == key[pending]) & (self.tag[s] == tag[pending])
            out[pending[match]] = held[match]
            empty = ~occupied
            claim_slots, first = np.unique(s[empty], return_index=True)  # one claimant per free slot
            winners = pending[empty][first]
            self.key[claim_slots], self.tag[claim_slots] = key[winners], tag[winners]
            self.pos[claim_slots] = pos[winners]
            self.used += len(winners)
            out[winners] = pos[winners]
            settled = match.copy()
            settled[np.flatnonzero(empty)[first]] = True
            moving = occupied & ~match  # a different id sits there: probe the next slot
            slot[pending[moving]] = (slot[pending[moving]] + 1) & int(mask)
            pending = pending[~settled]
        return out
