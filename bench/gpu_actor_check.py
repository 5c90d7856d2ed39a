"""GPU-path check of the scoring actor (no Ray needed): the same rows through ``jobs.actor.ScoringActor``
on CPU, on CUDA eager and on CUDA with ``torch.compile``, all fp32, with a small random-weight Llama
and the SmolLM2 tokenizer; prints the max relative difference of the NLL sums against the CPU run.

    python -m bench.gpu_actor_check [--data alpaca_data.json.gz] [--tokenizer DIR] [--rows 200]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.gpu_throughput import ROOT, SHARED_ALPACA, load_rows
from jobs.actor import ScoringActor
from jobs.specs import ModelSpec, ScorerSpec
from scoring.batching import BatchPolicy
from records import schema
from scoring.passes import RenderConfig
from scoring.render import Limits


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(SHARED_ALPACA if SHARED_ALPACA.exists()
                                          else ROOT / "data" / "alpaca_sample.jsonl"))
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--rows", type=int, default=200)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench.gpu_actor_check needs a CUDA GPU")
    if a.tokenizer is None:
        from scoring.models import resolve_model
        a.tokenizer = str(resolve_model("smollm2-135m-instruct"))
    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    rows = load_rows(Path(a.data), a.rows)
    tmp = tempfile.mkdtemp()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=2, tie_word_embeddings=True))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    rc = RenderConfig(limits=Limits(max_length=512))
    batch = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}
    batch[schema.POSITION] = np.array([r[schema.POSITION] for r in rows])
    out = {}
    for name, dev, comp in [("cpu", "cpu", False), ("cuda", "cuda", False), ("cuda_compiled", "cuda", True)]:
        spec = ScorerSpec(model=ModelSpec(tmp, dev, "float32"), render=rc, head_only=True, compile=comp,
                          policy=BatchPolicy(max_batch_tokens=65536 if dev == "cuda" else 4096, max_batch_rows=256))
        t = time.time()
        out[name] = ScoringActor(spec, 4)(batch)
        print(name, "s", round(time.time() - t, 2), "errors",
              sum(e is not None for e in out[name][schema.ERROR]))
    for k in ("cuda", "cuda_compiled"):
        for c in ("cond_nll_sum", "uncond_nll_sum"):
            x, y = out["cpu"][c], out[k][c]
            print(json.dumps({"vs_cpu": k, "col": c, "max_rel": float(np.max(np.abs(x - y) / np.abs(x)))}))


if __name__ == "__main__":
    main()
