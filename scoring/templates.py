"""Prompt templates: how an (instruction, input, history) triple becomes the context text.

``alpaca`` and ``vicuna`` are the strings of the Cherry LLM reference code (Alpaca's prompt ends in
"### Response:" with no newline; the response follows directly). ``none`` is Superfiltering's
template-free prompt ("{instruction}\\n{input}\\n"). ``chat`` defers to the tokenizer's own chat
template. Multi-turn history (turns before the scored exchange) is rendered as plain
"User:/Assistant:" lines ahead of the instruction for the text templates, as USER/ASSISTANT turns
for vicuna, and as real messages for ``chat``.
"""
from __future__ import annotations

from typing import Any

TEMPLATES = ("alpaca", "vicuna", "none", "chat")

ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
VICUNA_INPUT = VICUNA_SYSTEM + " USER: {instruction}\nInput:\n{input} ASSISTANT:"
VICUNA_NO_INPUT = VICUNA_SYSTEM + " USER: {instruction} ASSISTANT:"

# Header that Cherry puts before the response in the unconditioned ("direct answer") pass.
DIRECT_HEADERS = {"alpaca": "### Response:", "vicuna": "ASSISTANT:", "none": "", "chat": ""}

_ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}


def check_template(name: str) -> None:
    """Fail early with the valid choices when a template name is unknown."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose one of {', '.join(TEMPLATES)}")


def _history_text(history: list[dict[str, str]]) -> str:
    lines = [f"{_ROLE_NAMES.get(t['role'], t['role'])}: {t['content']}" for t in history]
    return "\n".join(lines) + "\n" if lines else ""


def render_prompt(template: str, instruction: str, input_: str, history: list[dict[str, str]],
                  tokenizer: Any = None) -> str:
    """Context text placed before the response in the conditioned pass."""
    check_template(template)
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("template=chat needs a tokenizer with a chat_template")
        user = instruction if not input_ else f"{instruction}\n\n{input_}"
        msgs = list(history) + [{"role": "user", "content": user}]
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    if template == "vicuna":
        prefix = "".join(
            f" USER: {t['content']}" if t["role"] == "user" else f" ASSISTANT: {t['content']}"
            for t in history if t["role"] in ("user", "assistant"))
        body = VICUNA_INPUT if input_ else VICUNA_NO_INPUT
        text = body.format(instruction=instruction, input=input_)
        return text.replace(VICUNA_SYSTEM, VICUNA_SYSTEM + prefix, 1) if prefix else text
    instruction = _history_text(history) + instruction
    if template == "alpaca":
        body = ALPACA_INPUT if input_ else ALPACA_NO_INPUT
        return body.format(instruction=instruction, input=input_)
    return f"{instruction}\n{input_}\n" if input_ else f"{instruction}\n"
