"""Text embeddings from a causal LM: masked mean (or last-token) pooling of the last hidden state.

Every text is encoded as ``[start] ⊕ tok(text, no specials)`` (cut to ``max_length``). The start
token only gives the model its usual document opening; it is never pooled, because its hidden state
is the same for every text and would pull all vectors together. Padding never reaches the pool, so
an embedding does not depend on the batch it was computed in.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from scoring.batching import BatchPolicy, plan_batches

POOLINGS = ("mean", "last", "weighted_mean")


def pool_hidden(hidden: torch.Tensor, lengths: torch.Tensor, skip: int = 1, pooling: str = "mean"
                ) -> torch.Tensor:
    """``hidden [B, L, d]`` → ``[B, d]`` float32 over positions ``skip .. lengths-1`` of each row.

    ``mean``: average of those positions; ``last``: the hidden state at ``lengths - 1``;
    ``weighted_mean``: position ``i`` weighted by ``i + 1`` (SGPT's weighted mean, RDS+'s pooling),
    normalised over the row's own positions, so padding never takes weight.
    Rows with no position to pool (``lengths <= skip``) come back as zero vectors.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    h = hidden.float()
    if pooling == "last":
        idx = (lengths - 1).clamp(min=0)
        out = h[torch.arange(h.shape[0], device=h.device), idx]
        return torch.where((lengths > skip).unsqueeze(1), out, torch.zeros_like(out))
    pos = torch.arange(h.shape[1], device=h.device).unsqueeze(0)
    mask = ((pos >= skip) & (pos < lengths.unsqueeze(1))).float()
    if pooling == "weighted_mean":
        mask = mask * (pos + 1).float()
    mask = mask.unsqueeze(2)
    return (h * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-12)


def pool_skip(pooling: str) -> int:
    """Leading positions left out of the pool: the start token for ``mean``/``last`` (see the module
    docstring); none for ``weighted_mean``, whose reference (RDS+) weights every position, the first
    included (its weight, 1 of L(L+1)/2, is what the reference gives it)."""
    return 0 if pooling == "weighted_mean" else 1


class HFEmbedder:
    """Embeds token-id sequences with the decoder of a causal LM (no LM head)."""

    def __init__(self, model: Any, pad_id: int, policy: BatchPolicy = BatchPolicy(),
                 pooling: str = "mean") -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.model = model
        self.pad_id = pad_id
        self.policy = policy
        self.pooling = pooling
        self.dim = int(model.config.hidden_size)

    def embed_ids(self, seqs: Sequence[list[int]]) -> np.ndarray:
        """``[n, hidden]`` float32 embeddings of ``[start] ⊕ content`` sequences (start not pooled)."""
        from scoring.render import PassIds

        items = [PassIds(list(s), len(s)) for s in seqs]  # nothing scored: the head never runs
        return embed_and_score(self.model, items, self.pad_id, self.policy, self.pooling)[0]


def encode_texts(tok: Any, texts: Sequence[str], start: int, max_length: int) -> list[list[int]]:
    """``[start] ⊕ tok(text)`` per text, content cut to ``max_length - 1`` tokens (the head is kept)."""
    ids = tok(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    return [[start] + list(s[: max(max_length - 1, 0)]) for s in ids]


@torch.inference_mode()
def embed_and_score(model: Any, items: Sequence[Any], pad_id: int, policy: BatchPolicy = BatchPolicy(),
                    pooling: str = "mean") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One decoder forward per batch gives both the pooled embedding of every item's whole sequence
    (start token excluded) and the summed NLL of its scored tokens ``ids[n_ctx:]`` (``PassIds``).

    Returns ``(emb [n, hidden] float32, nll_sum [n] float64, n_tokens [n])``. Used for Cherry's
    instruction embedding + instruction perplexity in one pass, and DiverseEvol's embeddings.
    """
    from scoring.nll import scored_mask, segment_sum, token_nll

    device = next(model.parameters()).device
    emb = np.zeros((len(items), int(model.config.hidden_size)), dtype=np.float32)
    sums = np.zeros(len(items), dtype=np.float64)
    counts = np.array([it.n_scored for it in items], dtype=np.int64)
    for batch in plan_batches([len(it.ids) for it in items], policy):
        seqs = [items[i] for i in batch]
        width = max(len(it.ids) for it in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        for r, it in enumerate(seqs):
            ids[r, : len(it.ids)] = torch.tensor(it.ids, dtype=torch.long)
        ids = ids.to(device)
        lengths = torch.tensor([len(it.ids) for it in seqs], device=device)
        n_ctx = torch.tensor([it.n_ctx for it in seqs], device=device)
        attn = (torch.arange(width, device=device).unsqueeze(0) < lengths.unsqueeze(1)).long()
        hidden = model.get_decoder()(input_ids=ids, attention_mask=attn).last_hidden_state
        emb[batch] = pool_hidden(hidden, lengths, skip=pool_skip(pooling), pooling=pooling).cpu().numpy()
        mask = scored_mask(lengths, n_ctx, width)
        if mask.any():
            targets = torch.cat([ids[:, 1:], ids[:, :1]], dim=1)[mask]
            rows = torch.arange(len(seqs), device=device).unsqueeze(1).expand_as(ids)[mask]
            nll = token_nll(hidden[mask], model.get_output_embeddings(), targets)
            sums[batch] = segment_sum(nll, rows, len(seqs)).cpu().numpy()
    return emb, sums, counts
