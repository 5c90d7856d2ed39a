"""HF transformers scoring backend: batched forward passes, LM head only on response positions.

Two exact speed-ups on top of length-sorted padded batches (both give each pass the same attention
it would get alone, so per-row sums match the padded path to float rounding):

* **shared-prefix reuse** (``reuse_prefix``): passes opening with the same long token run (a
  template's preamble, a chat system prompt; ``scoring.prefix``) get that run's keys/values from a
  per-scorer cache, computed once, and forward only their own remaining tokens;
* **packing** (``BatchPolicy.pack_width``): several passes share a row end to end under a
  block-diagonal mask with restarting position ids (``scoring.layout``), so padding nearly vanishes.
"""
from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

from scoring.batching import BatchPolicy
from scoring.layout import ForwardPlan, Layout, block_mask, build_layout, plan_forwards
from scoring.nll import scored_mask, segment_sum, token_nll
from scoring.render import PassIds

log = logging.getLogger(__name__)

KV = list[tuple[torch.Tensor, torch.Tensor]]
# distinct prefixes kept per scorer (a template has one or two preambles; chat has one system prompt)
PREFIX_CACHE_SIZE = 16


def layout_capable(model: Any) -> bool:
    """Whether a model takes the custom 4D masks, position ids and caches the fast paths need: sdpa
    or eager attention, full attention in every layer (a sliding window would be overridden)."""
    cfg = model.config
    window = getattr(cfg, "sliding_window", None)
    layer_types = getattr(cfg, "layer_types", None) or []
    return (getattr(cfg, "_attn_implementation", None) in ("sdpa", "eager") and not window
            and all(t == "full_attention" for t in layer_types))


class HFScorer:
    """Scores :class:`PassIds` items with a causal LM: ``(nll_sum, n_tokens)`` per item.

    The decoder runs on the padded (or packed) batch; the LM head and cross-entropy run only on hidden
    states whose next token is a scored response token, so the ``[B, L, vocab]`` logits are never built.
    """

    def __init__(self, model: Any, pad_id: int, policy: BatchPolicy = BatchPolicy(),
                 head_only: bool = True, compile: bool = False, reuse_prefix: bool = False) -> None:
        self.model = model
        # torch.compile(dynamic=True): one graph for every batch shape; fuses the elementwise kernels
        self.decoder = torch.compile(model.get_decoder(), dynamic=True) if compile else model.get_decoder()
        self.pad_id = pad_id
        self.policy = policy
        self.head_only = head_only
        self.device = next(model.parameters()).device
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        capable = layout_capable(model)
        if (reuse_prefix or policy.pack_width) and not capable:
            log.warning("model %s cannot take block masks (attention %s or a sliding window): "
                        "prefix reuse and packing are off", type(model).__name__,
                        getattr(model.config, "_attn_implementation", None))
        self.reuse_prefix = reuse_prefix and capable
        self.pack_width = policy.pack_width if capable else 0
        eager = getattr(model.config, "_attn_implementation", None) == "eager"
        self.mask_dtype = next(model.parameters()).dtype if eager else None
        params = inspect.signature(model.get_decoder().forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.prefixes: OrderedDict[tuple[int, ...], KV] = OrderedDict()
        self.forward_calls = 0
        self.tokens_forwarded = 0
        self.prefix_tokens_saved = 0

    def _pad(self, items: Sequence[PassIds]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        width = max(len(it.ids) for it in items)
        ids = np.full((len(items), width), self.pad_id, dtype=np.int64)
        for r, it in enumerate(items):
            ids[r, : len(it.ids)] = it.ids
        lengths = torch.tensor([len(it.ids) for it in items], device=self.device)
        n_ctx = torch.tensor([it.n_ctx for it in items], device=self.device)
        ids_t = torch.from_numpy(ids).to(self.device)
        attn = (torch.arange(width, device=self.device).unsqueeze(0) < lengths.unsqueeze(1)).long()
        return ids_t, attn, lengths, n_ctx

    def _run(self, kwargs: dict[str, Any], scored: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-token NLL of ``targets`` at the ``scored`` positions of one forward with ``kwargs``."""
        if self.head_only:
            hidden = self.decoder(**kwargs).last_hidden_state
            return token_nll(hidden[scored], self.model.get_output_embeddings(), targets, softcap=self.softcap)
        # models with extra logit processing: take the model's own logits
        logits = self.model(**kwargs).logits[scored].float()
        return torch.nn.functional.cross_entropy(logits, targets, reduction="none")

    @torch.inference_mode()
    def _forward(self, items: Sequence[PassIds]) -> torch.Tensor:
        """One padded batch, one pass per row, no prefix: HF builds the mask from the padding."""
        ids, attn, lengths, n_ctx = self._pad(items)
        mask = scored_mask(lengths, n_ctx, ids.shape[1])
        targets = torch.cat([ids[:, 1:], ids[:, :1]], dim=1)[mask]  # next token at each position
        rows = torch.arange(len(items), device=self.device).unsqueeze(1).expand_as(ids)[mask]
        nll = self._run({"input_ids": ids, "attention_mask": attn, "use_cache": False}, mask, targets)
        self.forward_calls += 1
        self.tokens_forwarded += int(lengths.sum())
        return segment_sum(nll, rows, len(items))

    def _cache(self, kv: KV, rows: int) -> Any:
        """A fresh cache holding ``kv`` for ``rows`` rows (the forward appends to it; ``kv`` stays)."""
        from transformers import DynamicCache

        cache = DynamicCache()
        for layer, (k, v) in enumerate(kv):
            cache.update(k.expand(rows, *k.shape[1:]), v.expand(rows, *v.shape[1:]), layer)
        return cache

    @torch.inference_mode()
    def _prefix_kv(self, prefix: tuple[int, ...]) -> KV:
        """Keys/values of ``prefix`` (computed once per scorer, LRU-kept)."""
        if prefix in self.prefixes:
            self.prefixes.move_to_end(prefix)
            return self.prefixes[prefix]
        from transformers import DynamicCache

        ids = torch.tensor([prefix], device=self.device)
        cache = DynamicCache()
        self.decoder(input_ids=ids, use_cache=True, **{self.cache_kw: cache})
        layers = getattr(cache, "layers", None)
        if layers is not None:
            kv = [(la.keys, la.values) for la in layers]
        else:  # older transformers
            kv = list(zip(cache.key_cache, cache.value_cache))
        self.prefixes[prefix] = kv
        if len(self.prefixes) > PREFIX_CACHE_SIZE:
            self.prefixes.popitem(last=False)
        return kv

    @torch.inference_mode()
    def _forward_layout(self, layout: Layout, kv: KV | None, n_items: int) -> torch.Tensor:
        """One batch laid out by :func:`scoring.layout.build_layout` (packed rows and/or a cached prefix)."""
        dev = self.device
        ids = torch.from_numpy(layout.ids).to(dev)
        scored = torch.from_numpy(layout.scored).to(dev)
        targets = torch.cat([ids[:, 1:], ids[:, :1]], dim=1)[scored]
        owners = torch.from_numpy(layout.owner).to(dev)[scored]
        kwargs = {"input_ids": ids, "attention_mask": block_mask(layout, dev, self.mask_dtype),
                  "position_ids": torch.from_numpy(layout.positions).to(dev), "use_cache": False}
        if kv is not None:
            kwargs[self.cache_kw] = self._cache(kv, ids.shape[0])
        nll = self._run(kwargs, scored, targets)
        self.forward_calls += 1
        self.tokens_forwarded += layout.tokens
        return segment_sum(nll, owners, n_items)

    def _batch_kv(self, prefixes: Sequence[tuple[int, ...]]) -> KV | None:
        """The cache content of a batch: its prefixes' keys/values side by side."""
        if not prefixes:
            return None
        kvs = [self._prefix_kv(p) for p in prefixes]
        if len(kvs) == 1:
            return kvs[0]
        return [tuple(torch.cat([kv[layer][j] for kv in kvs], dim=2) for j in (0, 1))  # type: ignore[misc]
                for layer in range(len(kvs[0]))]

    def _score_laid_out(self, items: Sequence[PassIds], plan: ForwardPlan, sums: np.ndarray) -> None:
        """Batches with cached prefixes and/or packed rows (prefixes may mix within a batch)."""
        for batch in plan.batches:
            idx = [i for row in batch for i in row]
            used = sorted({int(plan.item_prefix[i]) for i in idx} - {-1})
            local = {g: j for j, g in enumerate(used)}
            rows, k = [], 0
            for row in batch:
                rows.append(list(range(k, k + len(row))))
                k += len(row)
            layout = build_layout([items[i] for i in idx], rows, self.pad_id,
                                  [len(plan.prefixes[g]) for g in used],
                                  [local.get(int(plan.item_prefix[i]), -1) for i in idx])
            kv = self._batch_kv([plan.prefixes[g] for g in used])
            sums[idx] = self._forward_layout(layout, kv, len(idx)).cpu().numpy()

    def plan(self, items: Sequence[PassIds]) -> ForwardPlan:
        """The batches :meth:`score` runs ``items`` in (also what the dry run counts)."""
        return plan_forwards(items, self.policy, self.reuse_prefix, self.pack_width)

    def score(self, items: Sequence[PassIds]) -> tuple[np.ndarray, np.ndarray]:
        """Summed NLL (nats, float64) and scored-token count per item, in input order."""
        sums = np.zeros(len(items), dtype=np.float64)
        counts = np.array([it.n_scored for it in items], dtype=np.int64)
        plan = self.plan(items)
        self.prefix_tokens_saved += int(sum(len(it.ids) for it in items) - sum(plan.lengths)
                                        - sum(len(p) for p in plan.prefixes))
        if plan.laid_out:
            self._score_laid_out(items, plan, sums)
            return sums, counts
        for batch in plan.batches:  # one pass per padded row, no prefix: HF builds the masks
            idx = [row[0] for row in batch]
            sums[idx] = self._forward([items[i] for i in idx]).cpu().numpy()
        return sums, counts
