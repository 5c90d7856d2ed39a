"""What a scoring pass will cost, before it runs: tokens per pass, padded tokens as the backend will
batch them, and the time that takes at a measured rate (``dry_run=true``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from scoring.batching import BatchPolicy
from scoring.layout import plan_forwards
from scoring.render import PassIds, Rendered

# H100 SXM dense bf16 peak, and the bare engine's MFU measured on one (BENCHMARKS.md, 1B-class, compiled)
GPU_PEAK_FLOPS = 989.4e12
GPU_MEASURED_MFU = 0.452


@dataclass
class TokenCounts:
    """Token totals of one scoring stage over the rows that will be scored."""

    rows: int = 0
    valid_rows: int = 0
    tokens: dict[str, int] = field(default_factory=dict)  # per pass: every token forwarded
    scored: dict[str, int] = field(default_factory=dict)  # per pass: response tokens (LM head, loss)
    padded_tokens: int = 0  # rows × width summed over the forwards the backend will run
    forwards: int = 0

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())

    @property
    def scored_tokens(self) -> int:
        return sum(self.scored.values())


def count_chunk(rendered: Sequence[Rendered], passes: Sequence[str], policy: BatchPolicy, into: TokenCounts,
                reuse_prefix: bool = False) -> None:
    """Add one actor chunk's rows (scored together, as ``scoring.engine.score_rendered`` does: every pass
    of every valid row in one forward plan, ``scoring.layout.plan_forwards``, with shared prefixes and
    packed rows as the HF scorer runs them) to ``into``."""
    items: list[PassIds] = []
    into.rows += len(rendered)
    for r in rendered:
        if r.error:
            continue
        into.valid_rows += 1
        for name in passes:
            p = r.passes[name]
            into.tokens[name] = into.tokens.get(name, 0) + len(p.ids)
            into.scored[name] = into.scored.get(name, 0) + p.n_scored
            items.append(p)
    plan = plan_forwards(items, policy, reuse_prefix, policy.pack_width)
    into.padded_tokens += plan.padded_tokens  # a prefix is forwarded once per scorer, not counted
    into.forwards += len(plan.batches)


def forward_flops(n_params: int, hidden: int, vocab: int, padded_tokens: int, scored_tokens: int) -> float:
    """FLOPs of the scoring forwards: the decoder on every padded position (2 per weight; the token
    embedding is a lookup), the LM head on scored positions only (attention's quadratic term ignored:
    small at instruction lengths)."""
    head = hidden * vocab
    return 2.0 * max(n_params - head, 0) * padded_tokens + 2.0 * head * scored_tokens


def seconds(padded_tokens: int, rate: float, actors: int) -> float:
    """Wall time at ``rate`` padded tokens/s per actor, with ``actors`` actors side by side."""
    return padded_tokens / max(rate, 1e-9) / max(actors, 1)
