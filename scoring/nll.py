"""Per-token negative log-likelihood math, vectorised (no per-token Python loops).

Conventions: position ``p`` of a sequence predicts token ``p + 1``; a pass scores tokens
``ids[n_ctx:len)``, i.e. hidden states at positions ``n_ctx-1 .. len-2``. NLLs are in nats.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def scored_mask(lengths: torch.Tensor, n_ctx: torch.Tensor, width: int) -> torch.Tensor:
    """Bool ``[B, width]``: True at the positions whose *next* token is a scored response token."""
    pos = torch.arange(width, device=lengths.device).unsqueeze(0)
    return (pos >= (n_ctx - 1).unsqueeze(1)) & (pos < (lengths - 1).unsqueeze(1))


def token_nll(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor,
              chunk: int = 2048, softcap: float | None = None) -> torch.Tensor:
    """NLL of ``targets[i]`` under ``softmax(head(hidden[i]))``; the LM head runs in row chunks so
    the ``[N, vocab]`` logits never exist at once. Computed in fp32."""
    out = []
    for s in range(0, hidden.shape[0], chunk):
        logits = head(hidden[s:s + chunk]).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        out.append(F.cross_entropy(logits, targets[s:s + chunk], reduction="none"))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def segment_sum(values: torch.Tensor, segments: torch.Tensor, n: int) -> torch.Tensor:
    """Sum of ``values`` per segment id in ``[0, n)`` (float64 accumulation)."""
    acc = torch.zeros(n, dtype=torch.float64, device=values.device)
    return acc.index_add_(0, segments, values.double())


def nll_sums_from_logprobs(token_logprobs: torch.Tensor, response_mask: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(token_logprobs [B,L], response_mask [B,L]) -> (nll_sum [B], n_tokens [B])``.

    The pure form of the scorer's reduction, used by backends that return per-token log-probs
    (vLLM ``prompt_logprobs``) and by tests.
    """
    mask = response_mask.to(token_logprobs.dtype)
    return -(token_logprobs * mask).sum(dim=1).double(), response_mask.sum(dim=1)
