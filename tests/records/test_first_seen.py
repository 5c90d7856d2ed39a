"""The compact first-seen index behind staging's duplicate check equals a plain dict, across batches,
growth, repeats inside one batch and ids that share their first 64 bits."""
from __future__ import annotations

import random

import numpy as np

from records.first_seen import FirstSeen


def reference(stream: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    return [seen.setdefault(i, p) for p, i in enumerate(stream)]


def test_equals_a_dict_across_batches_and_growth() -> None:
    rng = random.Random(0)
    ids = [f"{rng.getrandbits(80):020x}" for _ in range(3000)]
    stream = [rng.choice(ids) for _ in range(20000)]
    index = FirstSeen(10)  # sized far too small: grows several times on the way
    got = np.concatenate([
        index.first(stream[s:s + 777], np.arange(s, min(s + 777, len(stream))))
        for s in range(0, len(stream), 777)
    ])
    assert got.tolist() == reference(stream)
    assert len(index) == len(set(stream))


def test_all_80_bits_are_compared() -> None:
    a, b = "0" * 16 + "0001", "0" * 16 + "0002"  # the same 64-bit key, different tags
    assert FirstSeen(4).first([a, b, a, b, b], np.arange(5)).tolist() == [0, 1, 0, 1, 1]


def test_colliding_slots_probe_on() -> None:
    ids = [f"{k << 20:016x}{t:04x}" for k in range(50) for t in (0, 1)]  # low bits alike: one slot
    stream = ids + ids[::-1]
    index = FirstSeen(len(ids))
    got = np.concatenate([index.first(stream[:60], np.arange(60)), index.first(stream[60:], np.arange(60, 200))])
    assert got.tolist() == reference(stream)
