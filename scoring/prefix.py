"""Shared-prefix grouping: passes that open with the same long run of tokens (a template's preamble,
a chat system prompt) share that run's keys/values, which a scorer computes once and reuses.

Pure planning over token ids; the forward that uses a group's prefix lives in the backend
(``scoring.hf``). A prefix never reaches the last context token of a member (``n_ctx - 1``): the
hidden state there predicts the first scored token, so it must be computed in the member's own pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from scoring.render import PassIds

# Below this many shared tokens a prefix is not worth a cache entry and a separate batch plan.
MIN_PREFIX_TOKENS = 16


@dataclass(frozen=True)
class PrefixGroup:
    """Items (indices into the scored list) whose ids all open with ``prefix``; an empty prefix
    holds the items that share nothing worth reusing."""

    prefix: tuple[int, ...]
    members: list[int]


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common leading run of ``a`` and ``b``."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


def prefix_groups(items: Sequence[PassIds], min_len: int = MIN_PREFIX_TOKENS) -> list[PrefixGroup]:
    """Partition ``items`` into groups sharing a prefix of at least ``min_len`` tokens.

    Items sorted by their ids are walked in order; a group grows while the next item shares at least
    ``min_len`` tokens (and room before its scored span) with the group's first item, and its prefix
    is the shortest such run (in sorted order that is the run shared with the group's last member).
    A group needs two members; everything else lands in the empty-prefix group. Deterministic: ties
    in the sort keep input order.
    """
    room = [it.n_ctx - 1 for it in items]
    eligible = sorted((i for i in range(len(items)) if room[i] >= min_len), key=lambda i: (items[i].ids, i))
    groups: list[PrefixGroup] = []
    rest = [i for i in range(len(items)) if room[i] < min_len]
    cur: list[int] = []
    cur_len = 0

    def close() -> None:
        if len(cur) >= 2:
            groups.append(PrefixGroup(tuple(items[cur[0]].ids[:cur_len]), list(cur)))
        else:
            rest.extend(cur)

    for i in eligible:
        if cur:
            shared = min(common_prefix_len(items[cur[0]].ids, items[i].ids), room[i], cur_len)
            if shared >= min_len:
                cur.append(i)
                cur_len = shared
                continue
            close()
        cur, cur_len = [i], room[i]
    if cur:
        close()
    if rest:
        groups.append(PrefixGroup((), sorted(rest)))
    return groups
