import numpy as np
import pytest
import torch
import torch.nn.functional as F

from records import schema
from scoring.batching import BatchPolicy
from scoring.engine import score_rows
from scoring.hf import HFScorer
from scoring.passes import RenderConfig
from scoring.render import Limits
from scoring.templates import render_prompt
from selection.scores import ifd_loss
from tests.scoring.test_passes import TRICKY, row

ROWS = TRICKY + [
    row("Give three tips for staying healthy.", "Eat a balanced diet, exercise regularly and sleep well."),
    row("Translate to French", "Bonjour", input_="Good morning"),
    row("What is the capital of France?", "The capital of France is Paris. " * 30),
    row("Write code", "def add(a, b):\n    return a + b  # numbers 12345 67890"),
]


def scorer(model, tok, rows_per_batch=64, head_only=True):
    return HFScorer(model, tok.pad_token_id, BatchPolicy(max_batch_tokens=1 << 20, max_batch_rows=rows_per_batch),
                    head_only=head_only)


@pytest.mark.parametrize("mode", ["clean", "cherry"])
def test_batch_size_invariance(tiny_model, mode):
    tok, model = tiny_model
    cfg = RenderConfig(mode=mode, uncond_prefix="header" if mode == "cherry" else "bos")
    one = score_rows(ROWS, cfg, tok, scorer(model, tok, 1))
    many = score_rows(ROWS, cfg, tok, scorer(model, tok, 16))
    for p in ("cond", "uncond"):
        np.testing.assert_allclose(one[f"{p}_nll_sum"], many[f"{p}_nll_sum"], rtol=1e-5, atol=1e-5)
        assert (one[f"{p}_tokens"] == many[f"{p}_tokens"]).all()


def test_head_only_equals_full_logits(tiny_model):
    tok, model = tiny_model
    a = score_rows(ROWS, RenderConfig(), tok, scorer(model, tok, head_only=True))
    b = score_rows(ROWS, RenderConfig(), tok, scorer(model, tok, head_only=False))
    np.testing.assert_allclose(a["cond_nll_sum"], b["cond_nll_sum"], rtol=1e-5)


def naive_pass(model, ids, n_ctx):
    """Oracle: batch-1 full forward, per-token log-softmax, sum over scored tokens."""
    logits = model(torch.tensor([ids])).logits[0]
    lp = F.log_softmax(logits.float(), dim=-1)
    return -sum(lp[i - 1, ids[i]].item() for i in range(n_ctx, len(ids)))


def cherry_reference(model, tok, instruction, input_, answer, max_length):
    """The Cherry LLM ``--mod cherry`` semantics, written independently from its description:
    joint tokenisation with truncation, span start = len(tok(text[:rfind(answer)])), per-token loss
    list over all positions, sliced ``[start-1:end-1]``; direct answer '### Response:'+A truncated
    to max_length - len(tok(prompt)) - 2."""
    prompt = render_prompt("alpaca", instruction, input_, [])

    def part(text, max_len):
        ids = tok.encode(text, truncation=True, max_length=max_len)
        start = len(tok.encode(text[: text.rfind(answer)]))
        with torch.no_grad():
            lp = F.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
        losses = [-lp[i - 1, ids[i]].item() for i in range(1, len(ids))]
        return np.array(losses[start - 1: len(ids) - 1])

    instr_len = len(tok.encode(prompt, truncation=True, max_length=max_length))
    alone = part("### Response:" + answer, max_length - instr_len - 2)
    cond = part(prompt + answer, max_length)
    return cond.mean(), alone.mean(), cond.mean() / alone.mean()


@pytest.mark.parametrize("max_length", [512, 48])
def test_cherry_mode_matches_reference_semantics(tiny_model, max_length):
    tok, model = tiny_model
    cfg = RenderConfig(mode="cherry", uncond_prefix="header", limits=Limits(max_length=max_length))
    cols = score_rows(ROWS, cfg, tok, scorer(model, tok, 8))
    ifd = ifd_loss(cols["cond_nll_sum"], cols["cond_tokens"], cols["uncond_nll_sum"], cols["uncond_tokens"])
    checked = 0
    for i, r in enumerate(ROWS):
        if cols[schema.ERROR][i]:
            continue
        lc, lu, ref = cherry_reference(model, tok, r[schema.INSTRUCTION], r[schema.INPUT], r[schema.OUTPUT], max_length)
        assert cols["cond_nll_sum"][i] / cols["cond_tokens"][i] == pytest.approx(lc, rel=1e-5)
        assert cols["uncond_nll_sum"][i] / cols["uncond_tokens"][i] == pytest.approx(lu, rel=1e-5)
        assert ifd[i] == pytest.approx(ref, rel=1e-5)
        checked += 1
    assert checked >= len(ROWS) - 2


def test_clean_mode_matches_naive_loop(tiny_model):
    tok, model = tiny_model
    cfg = RenderConfig()
    assert_matches_naive(model, tok, ROWS, cfg, score_rows(ROWS, cfg, tok, scorer(model, tok, 4)))


def assert_matches_naive(model, tok, rows, cfg, cols):
    """Every pass's summed NLL equals the naive batch-1 loop's to 1e-5 relative."""
    from scoring.passes import render_rows

    for i, rendered in enumerate(render_rows(rows, cfg, tok)):
        for p in ("cond", "uncond"):
            want = naive_pass(model, rendered.passes[p].ids, rendered.passes[p].n_ctx)
            assert cols[f"{p}_nll_sum"][i] == pytest.approx(want, rel=1e-5)


def test_know_pass_with_empty_knowledge_scores_like_cond(tiny_model):
    tok, model = tiny_model
    rows = [{**r, schema.KNOWLEDGE: k} for r, k in zip(ROWS, ["", "Reference: Paris.\n\n"] * len(ROWS))]
    cols = score_rows(rows, RenderConfig(passes=("cond", "uncond", "know")), tok, scorer(model, tok))
    empty = np.array([i % 2 == 0 for i in range(len(rows))])
    assert np.array_equal(cols["know_tokens"], cols["cond_tokens"])
    assert np.allclose(cols["know_nll_sum"][empty], cols["cond_nll_sum"][empty], rtol=1e-5)
    assert not np.allclose(cols["know_nll_sum"][~empty], cols["cond_nll_sum"][~empty], rtol=1e-5)
    assert (cols["knowledge_tokens"][empty] == 0).all() and (cols["knowledge_tokens"][~empty] > 0).all()
