"""Supervised fine-tuning: prompt tokens masked, response (+ EOS) trained, AdamW with a cosine schedule.

Examples are the rows' conditioned passes (``scoring.passes``, EOS appended), so a model is trained on
exactly the token ids it is later scored on. The loop is deterministic for a seed, shards its
examples by rank for data parallelism (DDP averages the gradients), and has no Ray in it.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from scoring.render import PassIds

IGNORE = -100


@dataclass(frozen=True)
class TrainParams:
    """Hyperparameters (defaults: METHODS.md; DiverseEvol rounds use 3 epochs)."""

    lr: float = 2e-5
    epochs: int = 1
    batch_size: int = 8            # examples per optimiser step per worker (after accumulation)
    micro_batch: int = 8           # examples per forward (gradient accumulation when smaller)
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 (HF ``get_cosine_schedule_with_warmup``)."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def collate(items: Sequence[PassIds], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, labels) with labels ``-100`` on context and padding."""
    width = max(len(it.ids) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    attn = torch.zeros((len(items), width), dtype=torch.long)
    for r, it in enumerate(items):
        n = len(it.ids)
        ids[r, :n] = torch.tensor(it.ids)
        labels[r, it.n_ctx:n] = torch.tensor(it.ids[it.n_ctx:])
        attn[r, :n] = 1
    return ids, attn, labels


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled positions, and their count."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    loss = F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, int((shift_labels != IGNORE).sum())


def train(model: Any, examples: Sequence[PassIds], pad_id: int, p: TrainParams, rank: int = 0, world: int = 1,
          on_step: Callable[[int, float, float], None] | None = None) -> list[float]:
    """Fine-tune ``model`` in place on this rank's share of ``examples``; returns the mean token loss of
    each optimiser step. Every rank runs the same number of steps (shares differ by at most one)."""
    torch.manual_seed(p.seed)
    device = next(model.parameters()).device
    mine = list(examples)[rank::world]
    steps_per_epoch = max(1, math.ceil(math.ceil(len(examples) / world) / p.batch_size))
    total = steps_per_epoch * p.epochs
    warmup = int(p.warmup_ratio * total)
    decay = [q for n, q in model.named_parameters() if q.requires_grad and q.ndim >= 2]
    no_decay = [q for n, q in model.named_parameters() if q.requires_grad and q.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": p.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=p.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup))
    model.train()
    losses: list[float] = []
    rng = random.Random(p.seed)
    step = 0
    for _ in range(p.epochs):
        order = list(range(len(mine)))
        rng.shuffle(order)
        for s in range(steps_per_epoch):
            batch = [mine[i] for i in order[s * p.batch_size:(s + 1) * p.batch_size]] or [mine[order[0]]]
            tokens = sum(it.n_scored for it in batch)
            total_loss = 0.0
            for m in range(0, len(batch), p.micro_batch):
                ids, attn, labels = collate(batch[m:m + p.micro_batch], pad_id)
                logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
                loss, _ = sft_loss(logits, labels.to(device))
                (loss / max(tokens, 1)).backward()
                total_loss += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(model.parameters(), p.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(total_loss / max(tokens, 1))
            if on_step:
                on_step(step, losses[-1], sched.get_last_lr()[0])
            step += 1
    model.eval()
    return losses
