"""The token layout of one forward: rows of one or more passes packed end to end, after the cached
keys/values of the shared prefixes (``scoring.prefix``) the batch's passes open with.

Pure numpy/torch. A *segment* is one pass's ids after its prefix (all of them when it has none); each
row holds segments end to end and pads the rest. The cache holds every prefix of the batch side by
side; a segment sees its own prefix's columns and, causally, itself only (a block-diagonal mask), and
its position ids continue from its prefix's length, so each pass is computed exactly as if it were
alone. Padding forms a segment of its own, so no query row is fully masked (a fully masked row gives
NaN hidden states, which could leak through ``0 * NaN`` in later layers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from scoring.batching import BatchPolicy, plan_batches, plan_packed
from scoring.prefix import MIN_PREFIX_TOKENS, prefix_groups
from scoring.render import PassIds


@dataclass(frozen=True)
class Layout:
    """Arrays ``[rows, width]`` for one forward. ``owner``: the index (into the batch's items) of the
    pass at a position, -1 on padding; ``scored``: the next token is a scored token of the same pass;
    ``seen_from``/``seen_to``: the cache columns (prefix tokens) a position attends to."""

    ids: np.ndarray
    positions: np.ndarray
    segment: np.ndarray
    owner: np.ndarray
    scored: np.ndarray
    seen_from: np.ndarray
    seen_to: np.ndarray
    cache_len: int

    @property
    def tokens(self) -> int:
        """Real (non-pad) tokens forwarded, prefixes excluded."""
        return int((self.owner >= 0).sum())


def build_layout(items: Sequence[PassIds], rows: Sequence[Sequence[int]], pad_id: int,
                 prefix_lens: Sequence[int] = (), item_prefix: Sequence[int] = ()) -> Layout:
    """Lay ``items`` out as ``rows`` (lists of indices into ``items``, packed end to end).

    ``prefix_lens[g]`` is the length of cached prefix ``g`` (prefixes sit side by side in the cache,
    in this order); ``item_prefix[i]`` is item ``i``'s prefix, -1 for none. An item's first
    ``prefix_lens[g]`` ids are its prefix and are not forwarded again.
    """
    offsets = np.concatenate([[0], np.cumsum(prefix_lens)]).astype(np.int64)
    pre = [item_prefix[i] if item_prefix else -1 for i in range(len(items))]
    plen = [prefix_lens[g] if g >= 0 else 0 for g in pre]
    width = max(sum(len(items[i].ids) - plen[i] for i in row) for row in rows)
    shape = (len(rows), width)
    ids = np.full(shape, pad_id, dtype=np.int64)
    positions = np.zeros(shape, dtype=np.int64)
    segment = np.full(shape, -1, dtype=np.int64)
    owner = np.full(shape, -1, dtype=np.int64)
    scored = np.zeros(shape, dtype=bool)
    seen_from = np.zeros(shape, dtype=np.int64)
    seen_to = np.zeros(shape, dtype=np.int64)
    seg = 0
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            it, p = items[i], plen[i]
            end = start + len(it.ids) - p
            ids[r, start:end] = it.ids[p:]
            positions[r, start:end] = np.arange(p, len(it.ids))
            segment[r, start:end] = seg
            owner[r, start:end] = i
            scored[r, start + it.n_ctx - p - 1 : end - 1] = True
            if pre[i] >= 0:
                seen_from[r, start:end], seen_to[r, start:end] = offsets[pre[i]], offsets[pre[i] + 1]
            seg, start = seg + 1, end
        positions[r, start:] = np.arange(width - start)  # the pad segment
    return Layout(ids, positions, segment, owner, scored, seen_from, seen_to, int(offsets[-1]))


def block_mask(layout: Layout, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Attention mask ``[rows, 1, width, cache_len + width]``: each query sees its own prefix's cache
    columns and the earlier positions of its own segment. Bool (True = attend) when ``dtype`` is None,
    else an additive float mask of that dtype (0 / most negative) for attention code that adds masks."""
    seg = torch.from_numpy(layout.segment).to(device)
    width = seg.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    mask = (seg.unsqueeze(2) == seg.unsqueeze(1)) & causal
    if layout.cache_len:
        col = torch.arange(layout.cache_len, device=device)
        lo = torch.from_numpy(layout.seen_from).to(device).unsqueeze(2)
        hi = torch.from_numpy(layout.seen_to).to(device).unsqueeze(2)
        mask = torch.cat([(col >= lo) & (col < hi), mask], dim=2)
    mask = mask.unsqueeze(1)
    if dtype is None:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill_(~mask, torch.finfo(dtype).min)


@dataclass(frozen=True)
class ForwardPlan:
    """How a backend runs a list of passes: the shared prefixes it caches, each item's prefix (-1:
    none), each item's forwarded length (its ids after its prefix), and the batches of rows of items."""

    prefixes: list[tuple[int, ...]]
    item_prefix: np.ndarray
    lengths: list[int]
    batches: list[list[list[int]]]

    @property
    def padded_tokens(self) -> int:
        """Positions the decoder computes: rows × widest row, summed over batches (cached prefixes
        are computed once per scorer and not counted)."""
        return sum(len(b) * max(sum(self.lengths[i] for i in row) for row in b) for b in self.batches)

    @property
    def laid_out(self) -> bool:
        """Whether the batches need :func:`build_layout` (a prefix or a packed row), not plain padding."""
        return bool(self.prefixes) or any(len(row) > 1 for b in self.batches for row in b)


def plan_forwards(items: Sequence[PassIds], policy: BatchPolicy, reuse_prefix: bool, pack_width: int = 0
                  ) -> ForwardPlan:
    """Group ``items`` by shared prefix (when ``reuse_prefix``) and batch their remaining tokens:
    packed rows of ``pack_width`` tokens, or one pass per padded row when it is 0."""
    item_prefix = np.full(len(items), -1, dtype=np.int64)
    groups = [g for g in prefix_groups(items, MIN_PREFIX_TOKENS) if g.prefix] if reuse_prefix else []
    for g, group in enumerate(groups):
        item_prefix[group.members] = g
    plen = [len(groups[g].prefix) if g >= 0 else 0 for g in item_prefix]
    lengths = [len(it.ids) - n for it, n in zip(items, plen)]
    if pack_width:
        batches = plan_packed(lengths, policy, pack_width)
    else:
        batches = [[[i] for i in batch] for batch in plan_batches(lengths, policy)]
    return ForwardPlan([g.prefix for g in groups], item_prefix, lengths, batches)
