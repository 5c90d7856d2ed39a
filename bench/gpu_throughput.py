"""GPU scoring throughput and model FLOP utilisation (MFU) of a 1B-class model, for a GPU machine.

    python -m bench.gpu_throughput [--rows 4000] [--data alpaca_data.json.gz] [--tokenizer DIR]
                                   [--budgets 16384,32768,65536,131072] [--naive-rows 300]

No download: the model is a Llama-architecture 1B-class config (Llama-3.2-1B shapes: 16 layers,
hidden 2048, MLP 8192, 32/8 heads) with **random weights** in bf16 and the SmolLM2 tokenizer's
vocabulary (49,152). Throughput does not depend on the weights' values, only on shapes and lengths.
The rows are real Alpaca rows rendered by Winnow (alpaca template, cond + uncond passes).

* ``engine``: the HF backend (``scoring.hf.HFScorer``: length-sorted batches under a padded token
  budget, LM head only on response positions) on the rendered passes, one eager run per budget in
  ``--budgets``, then ``torch.compile``d at the best budget. Rendering (CPU tokenisation) is timed
  on its own (``render_s``).
* ``naive``: the reference-code loop — one pass at a time (batch 1), full-vocabulary logits, loss
  from ``labels`` (Cherry's ``data_analysis.py``), on the first ``--naive-rows`` rows.
* ``vllm``: the vLLM backend on the same token ids, where ``vllm`` is importable.

MFU = achieved model FLOP/s / peak bf16 dense FLOP/s. Model FLOPs of a scoring forward per real
(non-pad) token: 2 x non-embedding decoder params + causal attention (4 x layers x hidden x mean
context) + the LM head (2 x hidden x vocab). The engine skips the LM head where no response token is
predicted, so its *executed* FLOPs are lower; both utilisation figures are written.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from records.readers import Fields, iter_raw, normalise
from records import schema
from scoring.batching import BatchPolicy
from scoring.hf import HFScorer
from scoring.passes import RenderConfig, pad_token, render_rows
from scoring.render import Limits, PassIds

ROOT = Path(__file__).resolve().parents[1]
SHARED_ALPACA = ROOT.parent / "shared" / "data" / "alpaca_data.json.gz"
# bf16 dense tensor-core peak (no sparsity), by device-name substring
PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.0,
               "A10G": 125.0, "L4": 121.0}
LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, max_position_embeddings=4096, rope_theta=500000.0,
                tie_word_embeddings=True)


def load_rows(path: Path, n: int) -> list[dict[str, Any]]:
    fmt = "jsonl" if path.name.endswith((".jsonl", ".jsonl.gz")) else "json"
    rows = []
    for r in iter_raw(path, fmt):
        if len(rows) >= n:
            break
        r = normalise(r, Fields())
        if r.error is None:
            rows.append({schema.ID: str(r.position), schema.POSITION: r.position, schema.ERROR: None, **r.fields})
    return rows


def build_model(vocab: int, device: str) -> Any:
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=vocab, **LLAMA_1B)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    return model.eval()


def flops(model: Any, items: list[PassIds], executed: bool) -> float:
    """Model FLOPs of scoring ``items`` (see module docstring)."""
    c = model.config
    emb = c.vocab_size * c.hidden_size
    n_dec = sum(p.numel() for p in model.model.parameters()) - emb  # decoder minus input embeddings
    tokens = sum(len(it.ids) for it in items)
    attn = sum(4 * c.num_hidden_layers * c.hidden_size * (len(it.ids) + 1) / 2 * len(it.ids) for it in items)
    head_tokens = sum(it.n_scored for it in items) if executed else tokens
    return 2 * n_dec * tokens + attn + 2 * emb * head_tokens


def peak_flops(name: str, override: float | None) -> float:
    if override:
        return override * 1e12
    for key, tf in PEAK_TFLOPS.items():
        if key in name:
            return tf * 1e12
    raise SystemExit(f"unknown GPU {name!r}: pass --peak-tflops")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@torch.inference_mode()
def naive(model: Any, items: list[PassIds]) -> float:
    """Batch-1 loop, full logits, loss via labels; seconds for ``items``."""
    dev = next(model.parameters()).device
    sync()
    t0 = time.time()
    for it in items:
        ids = torch.tensor([it.ids], device=dev)
        labels = ids.clone()
        labels[0, : it.n_ctx] = -100
        model(input_ids=ids, labels=labels).loss.item()
    sync()
    return time.time() - t0


def run_engine(model: Any, tok: Any, items: list[PassIds], budget: int, compile: bool = False
               ) -> tuple[float, float]:
    """(warm-up seconds, timed seconds) of the HF backend over pre-rendered ``items``. Rendering
    (tokenisation, CPU) is timed separately: in the job it runs in the actor beside the GPU work."""
    backend = HFScorer(model, pad_token(tok), BatchPolicy(max_batch_tokens=budget, max_batch_rows=4096),
                       compile=compile)
    t0 = time.time()
    backend.score(items)  # warm-up: kernels, allocator, and the torch.compile graph when compiling
    sync()
    warm = time.time() - t0
    t0 = time.time()
    backend.score(items)
    sync()
    return warm, time.time() - t0


def run_vllm(model: Any, tok: Any, items: list[PassIds], max_length: int) -> dict[str, Any]:
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        return {"skipped": f"vllm not importable here ({e})"}
    from scoring.vllm_backend import VLLMParams, VLLMScorer

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        backend = VLLMScorer.from_path(tmp, VLLMParams(device="cuda", dtype="bfloat16", max_model_len=max_length,
                                                       max_num_batched_tokens=16384))
        backend.score(items[:128])
        t0 = time.time()
        backend.score(items)
        return {"s": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--data", default=str(SHARED_ALPACA if SHARED_ALPACA.exists()
                                          else ROOT / "data" / "alpaca_sample.jsonl"))
    ap.add_argument("--tokenizer", default=None, help="tokenizer dir (default: the bundled SmolLM2's)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--budgets", default="16384,32768,65536,131072")
    ap.add_argument("--naive-rows", type=int, default=300)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--skip-vllm", action="store_true")
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--out", default="bench/results/gpu_throughput.json")
    a = ap.parse_args()
    from transformers import AutoTokenizer

    if not torch.cuda.is_available():
        raise SystemExit("bench.gpu_throughput needs a CUDA GPU (bench.throughput is the CPU benchmark)")
    torch.backends.cuda.matmul.allow_tf32 = True
    if a.tokenizer is None:
        from scoring.models import resolve_model
        a.tokenizer = str(resolve_model("smollm2-135m-instruct"))
    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    rows = load_rows(Path(a.data), a.rows)
    rc = RenderConfig(limits=Limits(max_length=a.max_length))
    t0 = time.time()
    rendered = render_rows(rows, rc, tok)
    render_s = time.time() - t0
    items = [p for r in rendered if not r.error for p in r.passes.values()]
    model = build_model(len(tok), "cuda")
    name = torch.cuda.get_device_name()
    peak = peak_flops(name, a.peak_tflops)
    f_model, f_exec = flops(model, items, False), flops(model, items, True)
    tokens = sum(len(it.ids) for it in items)
    res: dict[str, Any] = {
        "device": name, "peak_bf16_tflops": peak / 1e12, "torch": torch.__version__,
        "model": "Llama 1B-class, random weights, bf16",
        "params": sum(p.numel() for p in model.parameters()), "vocab": len(tok),
        "rows": len(rows), "passes": len(items), "tokens": tokens,
        "scored_tokens": sum(it.n_scored for it in items), "max_length": a.max_length,
        "model_gflop": round(f_model / 1e9, 1), "executed_gflop": round(f_exec / 1e9, 1),
        "render_s": round(render_s, 3), "engine": {}}

    def record(key: str, warm: float, s: float) -> None:
        res["engine"][key] = {"s": round(s, 3), "warmup_s": round(warm, 1), "tok_s": round(tokens / s),
                              "rows_s": round(len(rows) / s, 1), "mfu": round(f_model / s / peak, 4),
                              "executed_util": round(f_exec / s / peak, 4)}
        print(json.dumps({key: res["engine"][key]}), flush=True)

    for b in (int(x) for x in a.budgets.split(",")):
        record(f"eager_{b}", *run_engine(model, tok, items, b))
    best = min(res["engine"], key=lambda k: res["engine"][k]["s"])
    if not a.skip_compile:
        b = int(best.split("_")[1])
        record(f"compiled_{b}", *run_engine(model, tok, items, b, compile=True))
        best = min(res["engine"], key=lambda k: res["engine"][k]["s"])
    res["best"] = best
    if a.naive_rows:
        sub = [p for r in rendered[: a.naive_rows] if not r.error for p in r.passes.values()]
        naive(model, sub[:16])  # warm-up
        s = naive(model, sub)
        tok_sub = sum(len(it.ids) for it in sub)
        res["naive"] = {"rows": a.naive_rows, "s": round(s, 3), "tok_s": round(tok_sub / s),
                        "mfu": round(flops(model, sub, False) / s / peak, 4)}
        res["speedup_engine_vs_naive"] = round(res["engine"][best]["tok_s"] / res["naive"]["tok_s"], 1)
        print(json.dumps(res["naive"]), flush=True)
    if not a.skip_vllm:
        v = run_vllm(model, tok, items, a.max_length)
        if "s" in v:
            v.update(tok_s=round(tokens / v["s"]), mfu=round(f_model / v["s"] / peak, 4))
        res["vllm"] = v
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
