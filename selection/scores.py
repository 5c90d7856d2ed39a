"""Score formulas derived from per-pass NLL sums and token counts (nats).

mean loss      L = nll_sum / tokens
perplexity     PPL = exp(L)
IFD (Cherry)   ifd_loss = L_cond / L_uncond                 (ratio of mean cross-entropies)
IFD (Superfiltering) ifd_ppl = PPL_cond / PPL_uncond = exp(L_cond − L_uncond)
Both are NaN wherever a mean is undefined (no tokens) and ifd_loss is NaN when L_uncond == 0.
"""
from __future__ import annotations

import numpy as np


def mean_loss(nll_sum: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Mean NLL per scored token; NaN where no token was scored."""
    nll_sum = np.asarray(nll_sum, dtype=np.float64)
    tokens = np.asarray(tokens, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tokens > 0, nll_sum / np.where(tokens > 0, tokens, 1), np.nan)


def perplexity(nll_sum: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """exp(mean NLL)."""
    with np.errstate(over="ignore"):
        return np.exp(mean_loss(nll_sum, tokens))


def ifd_loss(cond_sum: np.ndarray, cond_tokens: np.ndarray, uncond_sum: np.ndarray,
             uncond_tokens: np.ndarray) -> np.ndarray:
    """Cherry's IFD: mean conditioned loss ÷ mean unconditioned loss."""
    lc, lu = mean_loss(cond_sum, cond_tokens), mean_loss(uncond_sum, uncond_tokens)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lu > 0, lc / np.where(lu > 0, lu, 1), np.nan)


def ifd_ppl(cond_sum: np.ndarray, cond_tokens: np.ndarray, uncond_sum: np.ndarray,
            uncond_tokens: np.ndarray) -> np.ndarray:
    """Superfiltering's IFD: conditioned perplexity ÷ unconditioned perplexity."""
    with np.errstate(over="ignore"):
        return np.exp(mean_loss(cond_sum, cond_tokens) - mean_loss(uncond_sum, uncond_tokens))


def rpe_diff(cond_sum: np.ndarray, cond_tokens: np.ndarray, know_sum: np.ndarray,
             know_tokens: np.ndarray) -> np.ndarray:
    """RECOST relative predictive entropy, difference form: H(A|Q) − H(A|K,Q) (nats per token).

    Positive: the trusted knowledge makes the response more predictable (consistent with it).
    """
    return mean_loss(cond_sum, cond_tokens) - mean_loss(know_sum, know_tokens)


def rpe_ratio(cond_sum: np.ndarray, cond_tokens: np.ndarray, know_sum: np.ndarray,
              know_tokens: np.ndarray) -> np.ndarray:
    """RECOST relative predictive entropy, ratio form: H(A|K,Q) / H(A|Q) (lower = more consistent)."""
    hq, hk = mean_loss(cond_sum, cond_tokens), mean_loss(know_sum, know_tokens)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hq > 0, hk / np.where(hq > 0, hq, 1), np.nan)


IFD_SCORES = ("ifd_loss", "ifd_ppl")  # the two IFD forms a selection can rank by


def ifd_columns(cond_sum: np.ndarray, cond_tokens: np.ndarray, uncond_sum: np.ndarray,
                uncond_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Mean losses and both IFD forms, named as scores.parquet names them."""
    return {"cond_loss": mean_loss(cond_sum, cond_tokens), "uncond_loss": mean_loss(uncond_sum, uncond_tokens),
            "ifd_loss": ifd_loss(cond_sum, cond_tokens, uncond_sum, uncond_tokens),
            "ifd_ppl": ifd_ppl(cond_sum, cond_tokens, uncond_sum, uncond_tokens)}


def rpe_columns(cond_sum: np.ndarray, cond_tokens: np.ndarray, know_sum: np.ndarray,
                know_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """H(A|K,Q) and both RPE forms, named as scores.parquet names them."""
    return {"know_loss": mean_loss(know_sum, know_tokens), "rpe_diff": rpe_diff(cond_sum, cond_tokens, know_sum, know_tokens),
            "rpe_ratio": rpe_ratio(cond_sum, cond_tokens, know_sum, know_tokens)}
