"""Shared-prefix reuse and packing give the padded path's per-pass sums (1e-5 relative, fp32), for
every template and variant, truncated rows, rows shorter than the prefix, and other architectures."""
import numpy as np
import pytest
import torch

from records import schema
from scoring.batching import BatchPolicy
from scoring.engine import score_rows
from scoring.hf import HFScorer
from scoring.passes import RenderConfig
from scoring.render import Limits
from tests.scoring.test_hf import ROWS, assert_matches_naive
from tests.scoring.test_passes import row

# rows sharing the template preamble, plus ones shorter than any prefix worth sharing
MORE = ROWS + [row("Name a colour.", "Blue."), row("Name a colour.", "Red, the colour of blood."),
               row("Hi", "Hello!"), row("", "x"), row("Add", "5", input_="2 and 3")]
FAST = [(True, 0), (False, 64), (True, 64), (True, 512)]
CHAT = ("{% for m in messages %}<s>{{ m['role'] }}: You are a helpful assistant. {{ m['content'] }}\n"
        "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")


def scored(model, tok, cfg, rows=MORE, reuse_prefix=False, pack_width=0):
    s = HFScorer(model, tok.pad_token_id, BatchPolicy(max_batch_tokens=256, max_batch_rows=8, pack_width=pack_width),
                 reuse_prefix=reuse_prefix)
    return score_rows(rows, cfg, tok, s), s


def assert_same(base, fast, passes):
    ok = base[schema.ERROR] == None  # noqa: E711 - elementwise on an object array
    assert (fast[schema.ERROR] == base[schema.ERROR]).all()
    for p in passes:
        np.testing.assert_allclose(fast[f"{p}_nll_sum"][ok], base[f"{p}_nll_sum"][ok], rtol=1e-5)
        assert (fast[f"{p}_tokens"] == base[f"{p}_tokens"]).all()


CONFIGS = {
    "alpaca": RenderConfig(),
    "vicuna": RenderConfig(template="vicuna"),
    "none (superfilter)": RenderConfig(template="none", score_eos=True),
    "cherry": RenderConfig(mode="cherry", uncond_prefix="header"),
    "cherry vicuna": RenderConfig(mode="cherry", template="vicuna", uncond_prefix="header"),
    "header uncond": RenderConfig(uncond_prefix="header"),
    "truncated": RenderConfig(limits=Limits(max_length=40)),
    "truncated cherry": RenderConfig(mode="cherry", uncond_prefix="header", limits=Limits(max_length=48)),
    "knowledge": RenderConfig(passes=("cond", "uncond", "know")),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("reuse_prefix,pack_width", FAST)
def test_fast_paths_equal_padded(tiny_model, name, reuse_prefix, pack_width):
    tok, model = tiny_model
    cfg = CONFIGS[name]
    rows = [{**r, schema.KNOWLEDGE: "Reference: Paris is in France.\n\n" * (i % 3)} for i, r in enumerate(MORE)]
    base, _ = scored(model, tok, cfg, rows)
    fast, s = scored(model, tok, cfg, rows, reuse_prefix, pack_width)
    assert_same(base, fast, cfg.passes)
    if reuse_prefix and cfg.template in ("alpaca", "vicuna") and cfg.limits.max_length > 48:
        assert s.prefix_tokens_saved > 0  # the preamble was shared


def test_chat_template_system_prompt_is_shared(tiny_model):
    tok, model = tiny_model
    tok.chat_template = CHAT
    try:
        base, _ = scored(model, tok, RenderConfig(template="chat"))
        fast, s = scored(model, tok, RenderConfig(template="chat"), reuse_prefix=True, pack_width=128)
    finally:
        tok.chat_template = None
    assert_same(base, fast, ("cond", "uncond"))
    assert s.prefix_tokens_saved > 0


def test_fast_path_matches_the_naive_loop(tiny_model):
    tok, model = tiny_model
    cfg = RenderConfig()
    fast, _ = scored(model, tok, cfg, reuse_prefix=True, pack_width=64)
    assert_matches_naive(model, tok, MORE, cfg, fast)


def test_prefix_cache_is_reused_across_calls(tiny_model):
    tok, model = tiny_model
    s = HFScorer(model, tok.pad_token_id, BatchPolicy(max_batch_tokens=256), reuse_prefix=True)
    score_rows(MORE, RenderConfig(), tok, s)
    cached = dict(s.prefixes)
    score_rows(MORE[::-1], RenderConfig(), tok, s)
    assert cached and all(s.prefixes[k] is v for k, v in cached.items())


def other_model(kind, tok):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    if kind == "gpt2":  # Superfiltering's scorer family: learned absolute positions, no BOS of its own
        cfg = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        return GPT2LMHeadModel(cfg).eval()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM._from_config(cfg, attn_implementation="eager").eval()  # additive float masks


@pytest.mark.parametrize("kind", ["gpt2", "llama-eager"])
def test_other_architectures(tiny_model, kind):
    tok, _ = tiny_model
    model = other_model(kind, tok)
    for cfg in (RenderConfig(), RenderConfig(template="none")):
        base, _ = scored(model, tok, cfg)
        fast, s = scored(model, tok, cfg, reuse_prefix=True, pack_width=64)
        assert s.reuse_prefix and s.pack_width == 64
        assert_same(base, fast, ("cond", "uncond"))


def test_sliding_window_models_keep_the_padded_path(tiny_model):
    from transformers import MistralConfig, MistralForCausalLM

    tok, _ = tiny_model
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=1, sliding_window=8)
    s = HFScorer(MistralForCausalLM(cfg).eval(), tok.pad_token_id, BatchPolicy(pack_width=64), reuse_prefix=True)
    assert not s.reuse_prefix and s.pack_width == 0


def test_dry_run_counts_follow_the_scorers_plan(tiny_model):
    from scoring.estimate import TokenCounts, count_chunk
    from scoring.passes import render_rows

    tok, model = tiny_model
    policy = BatchPolicy(max_batch_tokens=256, max_batch_rows=8, pack_width=64)
    rendered = render_rows(MORE, RenderConfig(), tok)
    items = [r.passes[p] for r in rendered if not r.error for p in ("cond", "uncond")]
    s = HFScorer(model, tok.pad_token_id, policy, reuse_prefix=True)
    s.score(items)
    counted = TokenCounts()
    count_chunk(rendered, ("cond", "uncond"), policy, counted, reuse_prefix=True)
    assert counted.forwards == s.forward_calls == len(s.plan(items).batches)
    assert s.tokens_forwarded == sum(s.plan(items).lengths) < counted.total_tokens
    assert counted.padded_tokens == s.plan(items).padded_tokens >= s.tokens_forwarded
