"""HF transformers scoring backend: batched forward passes, LM head only on response positions."""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from scoring.batching import BatchPolicy, plan_batches
from scoring.nll import scored_mask, segment_sum, token_nll
from scoring.render import PassIds

log = logging.getLogger(__name__)


class HFScorer:
    """Scores :class:`PassIds` items with a causal LM: ``(nll_sum, n_tokens)`` per item.

    The decoder runs on the padded batch; the LM head and cross-entropy run only on hidden states
    whose next token is a scored response token, so the ``[B, L, vocab]`` logits are never built.
    """

    def __init__(self, model: Any, pad_id: int, policy: BatchPolicy = BatchPolicy(),
                 head_only: bool = True, compile: bool = False) -> None:
        self.model = model
        # torch.compile(dynamic=True): one graph for every batch shape; fuses the elementwise kernels
        self.decoder = torch.compile(model.get_decoder(), dynamic=True) if compile else model.get_decoder()
        self.pad_id = pad_id
        self.policy = policy
        self.head_only = head_only
        self.device = next(model.parameters()).device
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self.forward_calls = 0
        self.tokens_forwarded = 0

    def _pad(self, items: Sequence[PassIds]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        width = max(len(it.ids) for it in items)
        ids = np.full((len(items), width), self.pad_id, dtype=np.int64)
        for r, it in enumerate(items):
            ids[r, : len(it.ids)] = it.ids
        lengths = torch.tensor([len(it.ids) for it in items], device=self.device)
        n_ctx = torch.tensor([it.n_ctx for it in items], device=self.device)
        ids_t = torch.from_numpy(ids).to(self.device)
        attn = (torch.arange(width, device=self.device).unsqueeze(0) < lengths.unsqueeze(1)).long()
        return ids_t, attn, lengths, n_ctx

    @torch.inference_mode()
    def _forward(self, items: Sequence[PassIds]) -> torch.Tensor:
        ids, attn, lengths, n_ctx = self._pad(items)
        mask = scored_mask(lengths, n_ctx, ids.shape[1])
        targets = torch.cat([ids[:, 1:], ids[:, :1]], dim=1)[mask]  # next token at each position
        rows = torch.arange(len(items), device=self.device).unsqueeze(1).expand_as(ids)[mask]
        if self.head_only:
            hidden = self.decoder(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
            nll = token_nll(hidden[mask], self.model.get_output_embeddings(), targets, softcap=self.softcap)
        else:  # models with extra logit processing: take the model's own logits
            logits = self.model(input_ids=ids, attention_mask=attn, use_cache=False).logits[mask].float()
            nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        self.forward_calls += 1
        self.tokens_forwarded += int(lengths.sum())
        return segment_sum(nll, rows, len(items))

    def score(self, items: Sequence[PassIds]) -> tuple[np.ndarray, np.ndarray]:
        """Summed NLL (nats, float64) and scored-token count per item, in input order."""
        sums = np.zeros(len(items), dtype=np.float64)
        counts = np.array([it.n_scored for it in items], dtype=np.int64)
        for batch in plan_batches([len(it.ids) for it in items], self.policy):
            sums[batch] = self._forward([items[i] for i in batch]).cpu().numpy()
        return sums, counts
