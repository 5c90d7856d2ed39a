"""Turn normalised rows into scoring passes with a tokenizer.

Two rendering modes:

* ``clean`` (Winnow's default): ``ids = [start] ⊕ tok(prompt) ⊕ tok(response, no specials) [⊕ eos]``
  where ``start`` is BOS (EOS for BOS-less tokenizers such as GPT-2's), added only when the
  tokenizer does not add it itself (and never for ``chat``, whose template opens the text); the
  unconditioned pass puts only ``start`` (or ``start`` + the template's response header) before the
  *same* response ids.
* ``cherry``: the Cherry LLM reference semantics, kept so users can match published numbers: the
  whole text ``P(Q)+A`` is tokenised jointly and truncated to ``max_length``; the answer span starts
  at ``len(tok(text[:text.rfind(A)]))``; the direct answer is ``"### Response:"+A`` truncated to
  ``max_length - len(tok(P(Q))) - 2`` (``+6`` for vicuna), no EOS is scored. Rows that the reference
  selection script would skip get an error code instead.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from records import schema
from scoring.render import Limits, PassIds, Rendered, assemble
from scoring.templates import DIRECT_HEADERS, check_template, render_prompt

# Reference truncation offsets of the direct-answer text (data_analysis.py / data_analysis_vic.py).
_CHERRY_DIRECT_OFFSET = {"alpaca": -2, "vicuna": 6}
# The reference selection script (data_by_IFD.py) re-derives the answer length at this offset.
_CHERRY_GUARD_OFFSET = {"alpaca": 4, "vicuna": 6}
PASSES = ("cond", "uncond", "know")
# Text longer than the window can use is cut in characters before tokenising (a 50 MB record would
# otherwise be tokenised whole to keep 511 tokens). No token of these tokenizers spans more than a few
# dozen characters, so a cut this far out leaves the kept tokens unchanged; the row is flagged.
CHARS_PER_TOKEN = 32


def char_cap(limits: Limits) -> int:
    """Characters of a text that can matter for a window of ``limits.max_length`` tokens."""
    return CHARS_PER_TOKEN * max(limits.max_length, 1)


@dataclass(frozen=True)
class RenderConfig:
    """How rows become passes. ``passes`` names the passes a method needs."""

    template: str = "alpaca"
    mode: str = "clean"              # clean | cherry
    uncond_prefix: str = "bos"       # bos | header
    score_eos: bool = False
    limits: Limits = field(default_factory=Limits)
    passes: tuple[str, ...] = ("cond", "uncond")

    def validate(self) -> None:
        check_template(self.template)
        unknown = set(self.passes) - set(PASSES)
        if unknown or "cond" not in self.passes:
            raise ValueError(f"passes must include cond and come from {', '.join(PASSES)}; got {self.passes}")
        if self.mode == "cherry" and set(self.passes) != {"cond", "uncond"}:
            raise ValueError("mode=cherry reproduces Cherry's two passes only; use mode=clean for RECOST")
        if self.mode not in ("clean", "cherry"):
            raise ValueError(f"unknown scoring mode {self.mode!r}; choose clean or cherry")
        if self.uncond_prefix not in ("bos", "header"):
            raise ValueError(f"unknown uncond_prefix {self.uncond_prefix!r}; choose bos or header")
        if self.mode == "cherry" and self.template not in _CHERRY_DIRECT_OFFSET:
            raise ValueError("mode=cherry reproduces the reference code for templates alpaca and vicuna only")


def start_token(tok: Any) -> int:
    """The token that opens a document: BOS, else EOS (GPT-2-style tokenizers have no BOS)."""
    for tid in (tok.bos_token_id, tok.eos_token_id):
        if tid is not None:
            return int(tid)
    raise ValueError("tokenizer has neither a BOS nor an EOS token; cannot build the unconditioned pass")


def pad_token(tok: Any) -> int:
    """The id padding uses: the tokenizer's pad token, else the document-start token."""
    return int(tok.pad_token_id) if tok.pad_token_id is not None else start_token(tok)


def _history(row: dict[str, Any]) -> list[dict[str, str]]:
    raw = row.get(schema.HISTORY) or ""
    return json.loads(raw) if raw else []


def _prompts(rows: Sequence[dict[str, Any]], cfg: RenderConfig, tok: Any) -> list[str]:
    return [render_prompt(cfg.template, r[schema.INSTRUCTION], r[schema.INPUT] or "", _history(r), tok)
            for r in rows]


def render_clean(rows: Sequence[dict[str, Any]], cfg: RenderConfig, tok: Any) -> list[Rendered]:
    """Clean rendering: exact spans by construction, identical response ids in every pass."""
    cap = char_cap(cfg.limits)
    prompts = _prompts(rows, cfg, tok)
    responses = [r[schema.OUTPUT] for r in rows]
    cut_prompt = [len(p) > cap for p in prompts]
    cut_response = [len(a) > cap for a in responses]
    is_chat = cfg.template == "chat"
    ctx_ids = tok([p[-cap:] for p in prompts], add_special_tokens=not is_chat)["input_ids"]
    resp_ids = tok([a[:cap] for a in responses], add_special_tokens=False)["input_ids"]
    start = start_token(tok)
    header = DIRECT_HEADERS[cfg.template]
    if cfg.uncond_prefix == "header" and header:
        uncond_ctx = tok(header, add_special_tokens=True)["input_ids"]
        uncond_ctx = uncond_ctx if uncond_ctx[:1] == [start] else [start] + uncond_ctx
    else:
        uncond_ctx = [start]
    eos = [tok.eos_token_id] if cfg.score_eos and tok.eos_token_id is not None else []
    know = _knowledge_ids(rows, cfg, tok)
    out = []
    for i, (ctx, resp) in enumerate(zip(ctx_ids, resp_ids)):
        ctx = list(ctx)
        if not is_chat and (not ctx or ctx[0] != start):
            ctx = [start] + ctx  # both passes open with the same document-start token
        contexts = {"cond": ctx, "uncond": list(uncond_ctx)}
        if know is not None:
            contexts["know"] = know_context(ctx, know[i], start, is_chat)
        r = assemble({k: v for k, v in contexts.items() if k in cfg.passes}, list(resp) + eos, cfg.limits, start)
        flag_char_cut(r, cut_prompt[i], cut_response[i], cfg.limits)
        if know is not None and not r.error:
            r.knowledge_tokens = max(0, r.passes["know"].n_ctx - r.passes["cond"].n_ctx)
            r.knowledge_truncated = r.knowledge_tokens < len(know[i])
        out.append(r)
    return out


def flag_char_cut(r: Rendered, prompt_cut: bool, response_cut: bool, limits: Limits) -> None:
    """Flag a row whose text was cut in characters: as truncated, or refused where the response
    may not be cut."""
    if r.error:
        return
    r.truncated = r.truncated or prompt_cut
    if response_cut and not limits.truncate_response:
        r.error, r.passes = schema.E_RESPONSE_TOO_LONG, {}
    r.response_truncated = r.response_truncated or response_cut


def _knowledge_ids(rows: Sequence[dict[str, Any]], cfg: RenderConfig, tok: Any) -> list[list[int]] | None:
    if "know" not in cfg.passes:
        return None
    cap = char_cap(cfg.limits)
    texts = [(r.get(schema.KNOWLEDGE) or "")[-cap:] for r in rows]
    return [list(x) for x in tok(texts, add_special_tokens=False)["input_ids"]] if texts else []


def know_context(cond_ctx: list[int], knowledge: list[int], start: int, is_chat: bool) -> list[int]:
    """Context of the knowledge-conditioned pass: ``[start] ⊕ knowledge ⊕ prompt``.

    The knowledge sits between the document start and the prompt, so cutting the context from the
    left (``assemble``) removes knowledge first and the prompt only once no knowledge is left. The
    retrieval stage puts the most relevant item last, so the least relevant goes first. A chat
    prompt opens with its own template tokens; the knowledge then opens the text.
    """
    if is_chat:
        return list(knowledge) + list(cond_ctx)
    body = cond_ctx[1:] if cond_ctx[:1] == [start] else list(cond_ctx)
    return [start] + list(knowledge) + body


def _span(tok: Any, text: str, answer: str, max_length: int) -> PassIds:
    ids = tok.encode(text, truncation=True, max_length=max_length)
    start = len(tok.encode(text[: text.rfind(answer)]))
    return PassIds(list(ids), min(start, len(ids)))


def render_cherry_row(row: dict[str, Any], cfg: RenderConfig, tok: Any) -> Rendered:
    """Reference (Cherry LLM ``--mod cherry``) semantics for one row; see the module docstring."""
    max_len, cap = cfg.limits.max_length, char_cap(cfg.limits)
    answer = row[schema.OUTPUT][:cap]  # the reference keeps the head of the text: cut the tail
    prompt = render_prompt(cfg.template, row[schema.INSTRUCTION], row[schema.INPUT] or "", _history(row))[:cap]
    header = DIRECT_HEADERS[cfg.template]
    instr_len = len(tok.encode(prompt, truncation=True, max_length=max_len))
    out = Rendered(prompt_tokens=instr_len, response_tokens=len(tok.encode(answer, add_special_tokens=False)))
    if max_len - instr_len <= 0:
        out.error = schema.E_NO_CONTEXT_ROOM
        return out
    cond = _span(tok, prompt + answer, answer, max_len)
    uncond = _span(tok, header + answer, answer, max_len - instr_len + _CHERRY_DIRECT_OFFSET[cfg.template])
    guard_len = len(tok.encode(header + answer, truncation=True,
                               max_length=max_len - instr_len + _CHERRY_GUARD_OFFSET[cfg.template])) - uncond.n_ctx
    out.passes = {"cond": cond, "uncond": uncond}
    out.truncated = len(tok.encode(prompt + answer)) > max_len
    out.response_truncated = out.truncated
    if cond.n_scored <= 0 or uncond.n_scored <= 0 or cond.n_ctx == 0 or uncond.n_ctx == 0:
        out.error = schema.E_NO_TOKENS
    elif instr_len + guard_len > max_len:
        out.error = schema.E_CHERRY_GUARD
    return out


def render_rows(rows: Sequence[dict[str, Any]], cfg: RenderConfig, tok: Any) -> list[Rendered]:
    """Render every row's passes; rows arriving with an error are passed through unrendered."""
    todo = [i for i, r in enumerate(rows) if not r.get(schema.ERROR)]
    out = [Rendered(error=rows[i].get(schema.ERROR)) for i in range(len(rows))]
    good = [rows[i] for i in todo]
    if cfg.mode == "cherry":
        rendered = [render_cherry_row(r, cfg, tok) for r in good]
    else:
        rendered = render_clean(good, cfg, tok) if good else []
    for i, r in zip(todo, rendered):
        out[i] = r
    return out
