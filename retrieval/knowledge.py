"""Rendering retrieved KB items as the knowledge block of RECOST's knowledge-conditioned pass.

Examples are rendered in the sample's own template (prompt then answer, like few-shot
demonstrations); ``plain`` style and the ``chat`` template use "Question:/Answer:" lines.
Paragraphs become ``"Reference: <text>"``. Items are joined with blank lines, the most relevant
item LAST (next to the sample's prompt), so the left cut of an over-long context drops the least
relevant knowledge first.
"""
from __future__ import annotations

from typing import Sequence

from retrieval.kb import KIND, TEXT, history
from records import schema
from scoring.templates import render_prompt

STYLES = ("template", "plain")


def render_item(item: dict[str, object], template: str, style: str = "template",
                paragraph_prefix: str = "Reference: ") -> str:
    """One KB item as reference text."""
    if item[KIND] == "paragraph":
        return f"{paragraph_prefix}{item[TEXT]}"
    instr, inp, out = (str(item[k] or "") for k in (schema.INSTRUCTION, schema.INPUT, schema.OUTPUT))
    if style == "plain" or template == "chat":
        q = f"{instr}\n{inp}" if inp else instr
        return f"Question: {q}\nAnswer: {out}"
    return render_prompt(template, instr, inp, history(item)) + out


def knowledge_block(items_best_first: Sequence[dict[str, object]], template: str, style: str = "template",
                    paragraph_prefix: str = "Reference: ") -> str:
    """The text placed between the document start and the sample's prompt ("" for no items)."""
    if style not in STYLES:
        raise ValueError(f"unknown knowledge style {style!r}; choose one of {', '.join(STYLES)}")
    parts = [render_item(it, template, style, paragraph_prefix) for it in reversed(list(items_best_first))]
    return "".join(p + "\n\n" for p in parts)
