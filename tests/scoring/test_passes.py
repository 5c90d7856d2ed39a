import json

import pytest

from records import schema
from scoring.passes import RenderConfig, render_rows
from scoring.render import Limits
from scoring.templates import render_prompt


def row(instruction, output, input_="", history=None, error=None):
    return {schema.ID: "x", schema.POSITION: 0, schema.INSTRUCTION: instruction, schema.INPUT: input_,
            schema.OUTPUT: output, schema.HISTORY: json.dumps(history) if history else "", schema.ERROR: error}


TRICKY = [
    row("Say hi", " leading space and trailing space "),
    row("Punctuation", ":Paris"),                       # merges with the template's ':' if joined
    row("Unicode", "Café naïve 東京 🙂"),
    row("Newlines", "\n\nline after blank lines"),
    row("Specials", "text with </s> and <s> inside"),
    row("Code", "def add(a, b):\n    return a + b"),
]


@pytest.mark.parametrize("template", ["alpaca", "vicuna", "none"])
def test_clean_response_span_is_exact(tiny_model, template):
    tok, _ = tiny_model
    cfg = RenderConfig(template=template)
    for r, out in zip(TRICKY, render_rows(TRICKY, cfg, tok)):
        want = tok(r[schema.OUTPUT], add_special_tokens=False)["input_ids"]
        for name in ("cond", "uncond"):
            p = out.passes[name]
            assert p.ids[p.n_ctx:] == want, (template, name, r[schema.OUTPUT])
        assert out.passes["uncond"].ids[: out.passes["uncond"].n_ctx] == [tok.bos_token_id]
        prompt = render_prompt(template, r[schema.INSTRUCTION], "", [])
        assert out.passes["cond"].ids[: out.passes["cond"].n_ctx] == tok(prompt)["input_ids"]


def test_eos_scored_when_configured(tiny_model):
    tok, _ = tiny_model
    out = render_rows(TRICKY[:1], RenderConfig(score_eos=True), tok)[0]
    assert out.passes["cond"].ids[-1] == tok.eos_token_id == out.passes["uncond"].ids[-1]


def test_truncation_cuts_prompt_keeps_response(tiny_model):
    tok, _ = tiny_model
    long_input = "word " * 400
    r = row("Summarise", "short answer", input_=long_input)
    out = render_rows([r], RenderConfig(limits=Limits(max_length=64)), tok)[0]
    want = tok("short answer", add_special_tokens=False)["input_ids"]
    assert out.truncated and not out.response_truncated
    assert len(out.passes["cond"].ids) == 64 and out.passes["cond"].ids[-len(want):] == want
    assert out.passes["cond"].ids[0] == tok.bos_token_id


def test_multiturn_history_is_context(tiny_model):
    tok, _ = tiny_model
    hist = [{"role": "user", "content": "first question"}, {"role": "assistant", "content": "first answer"}]
    out = render_rows([row("second question", "second answer", history=hist)], RenderConfig(), tok)[0]
    text = tok.decode(out.passes["cond"].ids[: out.passes["cond"].n_ctx])
    assert "first question" in text and "first answer" in text and "second question" in text


def test_errored_rows_pass_through(tiny_model):
    tok, _ = tiny_model
    out = render_rows([row("a", "b", error="malformed_json")], RenderConfig(), tok)[0]
    assert out.error == "malformed_json" and not out.passes


def test_cherry_mode_uses_joint_tokenisation_and_header(tiny_model):
    tok, _ = tiny_model
    r = row("Punctuation", ":Paris")
    out = render_rows([r], RenderConfig(mode="cherry", uncond_prefix="header"), tok)[0]
    prompt = render_prompt("alpaca", "Punctuation", "", [])
    assert out.passes["cond"].ids == tok.encode(prompt + ":Paris")
    assert out.passes["uncond"].ids == tok.encode("### Response::Paris")
    assert out.passes["uncond"].n_ctx == len(tok.encode("### Response:"))


def test_unknown_template_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of"):
        RenderConfig(template="llama9").validate()


KNOW = ("cond", "uncond", "know")


def krow(instruction, output, knowledge, input_=""):
    return {**row(instruction, output, input_), schema.KNOWLEDGE: knowledge}


@pytest.mark.parametrize("template", ["alpaca", "vicuna", "none"])
def test_know_pass_scores_identical_response_tokens(tiny_model, template):
    tok, _ = tiny_model
    rows = [krow(r[schema.INSTRUCTION], r[schema.OUTPUT], "Reference: Paris is in France.\n\n") for r in TRICKY]
    for r, out in zip(rows, render_rows(rows, RenderConfig(template=template, passes=KNOW), tok)):
        want = tok(r[schema.OUTPUT], add_special_tokens=False)["input_ids"]
        c, k = out.passes["cond"], out.passes["know"]
        assert k.ids[k.n_ctx:] == c.ids[c.n_ctx:] == out.passes["uncond"].ids[1:] == want
        # know context = start ⊕ knowledge ⊕ the cond context after its start token
        know_ids = tok("Reference: Paris is in France.\n\n", add_special_tokens=False)["input_ids"]
        assert k.ids[: k.n_ctx] == c.ids[:1] + know_ids + c.ids[1: c.n_ctx]
        assert out.knowledge_tokens == len(know_ids) and not out.knowledge_truncated


def test_knowledge_is_cut_first_and_the_response_never(tiny_model):
    tok, _ = tiny_model
    knowledge = "Reference: " + "the quick brown fox jumps over the lazy dog. " * 40
    r = krow("What is the capital of France?", "The capital of France is Paris.", knowledge)
    out = render_rows([r], RenderConfig(passes=KNOW, limits=Limits(max_length=96)), tok)[0]
    c, k = out.passes["cond"], out.passes["know"]
    assert not out.truncated and not out.response_truncated        # prompt and response intact
    assert len(k.ids) == 96 and k.ids[0] == tok.bos_token_id
    assert k.ids[k.n_ctx - (c.n_ctx - 1):] == c.ids[1:]                # whole prompt + response kept
    assert out.knowledge_truncated and out.knowledge_tokens == 96 - len(c.ids)
    # the kept knowledge is its tail: the end of the block, next to the prompt
    kept = k.ids[1: 1 + out.knowledge_tokens]
    assert kept == tok(knowledge, add_special_tokens=False)["input_ids"][-out.knowledge_tokens:]


def test_no_knowledge_means_know_equals_cond(tiny_model):
    tok, _ = tiny_model
    out = render_rows([krow("Say hi", "Hello", "")], RenderConfig(passes=KNOW), tok)[0]
    assert out.passes["know"] == out.passes["cond"] and out.knowledge_tokens == 0


def test_know_pass_refused_in_cherry_mode():
    with pytest.raises(ValueError, match="cherry"):
        RenderConfig(mode="cherry", uncond_prefix="header", passes=KNOW).validate()
    with pytest.raises(ValueError, match="passes"):
        RenderConfig(passes=("uncond", "bogus")).validate()


def test_huge_text_is_cut_in_characters_before_tokenising(tiny_model):
    """A 20 MB response and a 20 MB instruction render in well under a second, flagged, and the kept
    tokens equal those of a whole-text tokenisation of a shorter but still over-long row."""
    import time

    from scoring.passes import CHARS_PER_TOKEN, RenderConfig, render_rows
    from scoring.render import Limits

    tok, _ = tiny_model
    cfg = RenderConfig(limits=Limits(max_length=64))
    unit = "The quick brown fox jumps. "
    huge = unit * (20_000_000 // len(unit))
    just_over = unit * (CHARS_PER_TOKEN * 64 // len(unit) + 5)
    rows = [{"instruction": "Q", "input": "", "output": huge, "history": "", "error": None},
            {"instruction": huge, "input": "", "output": "A short answer.", "history": "", "error": None}]
    t0 = time.time()
    big = render_rows(rows, cfg, tok)
    assert time.time() - t0 < 5
    assert big[0].response_truncated and big[1].truncated and not big[0].error and not big[1].error
    ref = render_rows([{**rows[0], "output": just_over}, {**rows[1], "instruction": just_over}], cfg, tok)
    assert big[0].passes["cond"].ids == ref[0].passes["cond"].ids
    assert big[1].passes["cond"].ids == ref[1].passes["cond"].ids
    refused = render_rows(rows[:1], RenderConfig(limits=Limits(max_length=64, truncate_response=False)), tok)
    assert refused[0].error == "response_too_long"
