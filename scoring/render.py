"""Token-id construction for scoring passes, with exact response spans.

A *pass* is a context followed by the response: ``ids = context ⊕ response`` and the scored tokens
are ``ids[n_ctx:]``. All passes of one row share the identical response ids, so their losses cover
the same tokens. When a row is too long the context is cut from the left (a leading BOS is kept);
the response is cut only where the config allows it, and the row is flagged either way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from records import schema


@dataclass(frozen=True)
class PassIds:
    """Token ids of one pass; tokens ``ids[n_ctx:]`` are scored (each predicted from its prefix)."""

    ids: list[int]
    n_ctx: int

    @property
    def n_scored(self) -> int:
        return len(self.ids) - self.n_ctx


@dataclass
class Rendered:
    """All passes of one row plus the bookkeeping that goes to scores.parquet."""

    passes: dict[str, PassIds] = field(default_factory=dict)
    prompt_tokens: int = 0
    response_tokens: int = 0
    truncated: bool = False
    response_truncated: bool = False
    error: str | None = None
    knowledge_tokens: int = 0
    knowledge_truncated: bool = False


@dataclass(frozen=True)
class Limits:
    """Length policy: total window, optional response cap, and whether the response may be cut."""

    max_length: int = 512
    max_response_tokens: int | None = None
    truncate_response: bool = True


def cut_left(ctx: list[int], room: int, keep_first: bool) -> list[int]:
    """Keep the last ``room`` tokens of ``ctx`` (and its first token, e.g. BOS, when asked)."""
    if len(ctx) <= room:
        return ctx
    if keep_first and room >= 2:
        return ctx[:1] + ctx[len(ctx) - (room - 1):]
    return ctx[len(ctx) - room:] if room > 0 else []


def assemble(contexts: dict[str, list[int]], response: list[int], limits: Limits,
             bos_id: int | None, main: str = "cond") -> Rendered:
    """Join each context with the shared response under the length policy.

    The response budget leaves room for the shortest context (at least one token, so the first
    response token has a prefix). Longer contexts are then cut from the left to fit.
    """
    out = Rendered(response_tokens=len(response))
    if not response:
        out.error = schema.E_NO_TOKENS
        return out
    min_ctx = max(1, min(len(c) for c in contexts.values()))
    budget = limits.max_length - min_ctx
    if limits.max_response_tokens is not None:
        budget = min(budget, limits.max_response_tokens)
    if budget <= 0:
        out.error = schema.E_NO_CONTEXT_ROOM
        return out
    if len(response) > budget:
        if not limits.truncate_response:
            out.error = schema.E_RESPONSE_TOO_LONG
            return out
        response = response[:budget]
        out.response_truncated = True
    room = limits.max_length - len(response)
    for name, ctx in contexts.items():
        if not ctx:
            out.error = schema.E_NO_CONTEXT_ROOM
            return out
        kept = cut_left(ctx, room, keep_first=bos_id is not None and ctx[0] == bos_id)
        if name == main:
            out.truncated = len(kept) < len(ctx)
            out.prompt_tokens = len(kept)
        out.passes[name] = PassIds(kept + response, len(kept))
    return out


# ---- wire format: rendered passes as flat columns (a CPU render stage ships them to the scorers) ----

RENDERED = "_rendered"  # marker column: the batch carries pre-rendered passes


def ids_col(pass_name: str) -> str:
    return f"_ids_{pass_name}"


def nctx_col(pass_name: str) -> str:
    return f"_nctx_{pass_name}"


_FIELDS = {"prompt_tokens": int, "response_tokens": int, "truncated": bool, "response_truncated": bool,
           "knowledge_tokens": int, "knowledge_truncated": bool}


def to_columns(rendered: list[Rendered], passes: tuple[str, ...]) -> dict[str, list]:
    """Rendered rows as column lists (token ids as int lists; an errored row has empty passes)."""
    # errors as strings, "" for none: an all-None column would come back as float NaN from Arrow
    cols: dict[str, list] = {RENDERED: [True] * len(rendered), "_render_error": [r.error or "" for r in rendered]}
    for f in _FIELDS:
        cols[f"_{f}"] = [getattr(r, f) for r in rendered]
    for p in passes:
        cols[ids_col(p)] = [r.passes[p].ids if p in r.passes else [] for r in rendered]
        cols[nctx_col(p)] = [r.passes[p].n_ctx if p in r.passes else 0 for r in rendered]
    return cols


def from_columns(batch: dict, passes: tuple[str, ...]) -> list[Rendered]:
    """Inverse of :func:`to_columns` for a numpy batch (lists arrive as arrays)."""
    out = []
    for i in range(len(batch[RENDERED])):
        r = Rendered(**{f: cast(batch[f"_{f}"][i]) for f, cast in _FIELDS.items()})
        err = batch["_render_error"][i]
        r.error = err if isinstance(err, str) and err else None
        if not r.error:
            r.passes = {p: PassIds(np.asarray(batch[ids_col(p)][i]).tolist(), int(batch[nctx_col(p)][i]))
                        for p in passes}
        out.append(r)
    return out
