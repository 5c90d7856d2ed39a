"""Config → typed settings: variant presets, validation at start-up, resource resolution.

Variants (``method.variant``):

=============  ========  =====  =============  =========  =========  =====================
variant        template  mode   uncond_prefix  score_eos  score      keep score == max?
=============  ========  =====  =============  =========  =========  =====================
default        alpaca    clean  bos            false      ifd_loss   yes
cherry         alpaca    cherry header         false      ifd_loss   yes  (reference code)
superfilter    none      clean  bos            false      ifd_ppl    no   (strict < 1)
=============  ========  =====  =============  =========  =========  =====================
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from jobs.readers import FORMATS, Fields
from scoring.passes import RenderConfig
from scoring.render import Limits

ROOT = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, dict[str, Any]] = {
    "default": dict(template="alpaca", mode="clean", uncond_prefix="bos", score_eos=False,
                    score="ifd_loss", max_inclusive=True),
    "cherry": dict(template="alpaca", mode="cherry", uncond_prefix="header", score_eos=False,
                   score="ifd_loss", max_inclusive=True),
    "superfilter": dict(template="none", mode="clean", uncond_prefix="bos", score_eos=False,
                        score="ifd_ppl", max_inclusive=False),
}
SCORES = ("ifd_loss", "ifd_ppl")


def variant_value(cfg: Any, key: str, section: str = "method") -> Any:
    """A knob's configured value, or the variant's preset when the config leaves it null."""
    variant = cfg.method.variant
    if variant not in VARIANTS:
        raise ValueError(f"unknown method.variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    value = cfg[section].get(key)
    return VARIANTS[variant][key] if value is None else value


def resolve_data_path(path: str) -> Path:
    """Relative paths resolve against the working directory first, then the project root."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    alt = ROOT / p
    return alt if alt.exists() else p


def data_path(cfg: Any) -> Path:
    """The pool's input file (``data.path``), resolved."""
    return resolve_data_path(cfg.data.path)


def fields(cfg: Any) -> Fields:
    """Field names of the pool's records (``data.fields``)."""
    return fields_from(cfg.data.fields)


def fields_from(f: Any) -> Fields:
    """Field names from a ``fields`` config node (``data.fields`` or ``kb.fields``)."""
    return Fields(instruction=f.instruction, input=f.input, output=f.output,
                  conversation=tuple(f.conversation), role_keys=tuple(f.role_keys),
                  content_keys=tuple(f.content_keys))


def render_config(cfg: Any, passes: tuple[str, ...] = ("cond", "uncond")) -> RenderConfig:
    m = cfg.method
    rc = RenderConfig(
        template=variant_value(cfg, "template"), mode=variant_value(cfg, "mode"),
        uncond_prefix=variant_value(cfg, "uncond_prefix"), score_eos=bool(variant_value(cfg, "score_eos")),
        limits=Limits(max_length=int(cfg.model.max_length), max_response_tokens=m.max_response_tokens,
                      truncate_response=bool(m.truncate_response)),
        passes=passes)
    rc.validate()
    return rc


def device(cfg: Any) -> str:
    dev = cfg.backend.device
    if dev == "auto":
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    if dev not in ("cpu", "cuda"):
        raise ValueError(f"unknown backend.device {dev!r}; choose auto, cpu or cuda")
    return dev


# Padded tokens per forward when backend.max_batch_tokens=auto. On the 2-core CPU, 2048 ran 1.4x
# faster than 8192 and 2.8x faster than 32768 (activations stay in cache); on an H100, 65536 was the
# fastest of 16k..128k for a 1B model (see BENCHMARKS.md). For backend=vllm the same key sets the
# scheduler's tokens per step (capped further by backend.logits_budget_gib).
AUTO_BATCH_TOKENS = {"cpu": 2048, "cuda": 65536}
AUTO_VLLM_STEP = {"cpu": 2048, "cuda": 16384}
BACKENDS = ("hf", "vllm")


def max_batch_tokens(cfg: Any, dev: str) -> int:
    """Padded tokens per HF forward: ``backend.max_batch_tokens``, or the device's measured default."""
    b = cfg.backend.max_batch_tokens
    return AUTO_BATCH_TOKENS[dev] if b == "auto" else int(b)


def vllm_step(cfg: Any, dev: str) -> int:
    """vLLM scheduler tokens per step: ``backend.max_batch_tokens``, or the device's default."""
    b = cfg.backend.max_batch_tokens
    return AUTO_VLLM_STEP[dev] if b == "auto" else int(b)


def gpus_per_scorer(b: Any) -> float:
    """GPUs one scoring actor holds: tensor_parallel x pipeline_parallel for vLLM (one engine over
    that many GPUs of one node), ``num_gpus_per_actor`` for HF (a fraction packs actors on a GPU)."""
    if b.name == "vllm":
        return float(int(b.tensor_parallel) * int(b.pipeline_parallel))
    return float(b.num_gpus_per_actor)


def compile_decoder(b: Any, dev: str) -> bool:
    """``backend.compile``: auto compiles the HF decoder (``torch.compile``) on CUDA only: 44.5% vs
    32.6% MFU on an H100 for a 1B model, after ~60 s of compilation per actor (BENCHMARKS.md)."""
    c = b.get("compile", False)
    return dev == "cuda" if c == "auto" else bool(c)


def render_actors(b: Any, dev: str) -> int | str:
    """``backend.render_actors``: CPU actors that tokenise ahead of the scorers. auto = one per scoring
    actor on CUDA (rendering 4,000 rows took 1.7 s of CPU against 3.1 s of compiled H100 scoring: done
    inline it stalls the GPU), none on CPU (the scorers' own cores render; nothing to overlap with)."""
    r = b.get("render_actors", 0)
    if r == "auto":
        return "per_scorer" if dev == "cuda" else 0
    return int(r)


def vllm_params(cfg: Any, dev: str) -> dict[str, Any]:
    """The ``VLLMParams`` fields of a ``backend=vllm`` config (a plain dict for the actor spec)."""
    b = cfg.backend
    return {"device": dev, "dtype": cfg.model.dtype, "max_model_len": int(cfg.model.max_length),
            "max_num_batched_tokens": vllm_step(cfg, dev), "max_num_seqs": int(b.max_batch_rows),
            "tensor_parallel": int(b.tensor_parallel), "pipeline_parallel": int(b.pipeline_parallel),
            "gpu_memory_utilization": float(b.gpu_memory_utilization), "kv_cache_gib": float(b.kv_cache_gib),
            "logits_budget_gib": float(b.logits_budget_gib), "enable_prefix_caching": bool(b.enable_prefix_caching),
            "enforce_eager": b.enforce_eager, "trust_remote_code": bool(cfg.model.trust_remote_code),
            "seed": int(cfg.get("seed", 0))}


def actor_spec(cfg: Any, model_path: Path, rc: RenderConfig) -> dict[str, Any]:
    """The plain dict shipped to every scoring actor."""
    b = cfg.backend
    dev = device(cfg)
    mbt = max_batch_tokens(cfg, dev)
    spec = {
        "backend": b.name, "model_path": str(model_path), "device": dev, "dtype": cfg.model.dtype,
        "trust_remote_code": bool(cfg.model.trust_remote_code), "threads": int(b.threads_per_actor),
        "num_gpus": gpus_per_scorer(b) if dev == "cuda" else 0.0,
        "head_only": bool(b.get("head_only", True)), "compile": compile_decoder(b, dev),
        "render_actors": render_actors(b, dev),
        "chunk_rows": None if b.batch_size == "auto" else int(b.batch_size),
        "policy": {"max_batch_tokens": mbt, "max_batch_rows": int(b.max_batch_rows)},
        "render": {**asdict(rc), "limits": asdict(rc.limits), "passes": list(rc.passes)},
    }
    if b.name == "vllm":
        spec["vllm"] = vllm_params(cfg, dev)
    return spec


def validate_backend(cfg: Any) -> None:
    b = cfg.backend
    if b.name not in BACKENDS:
        raise ValueError(f"unknown backend {b.name!r}; choose one of {', '.join(BACKENDS)}")
    dev = device(cfg)
    if b.name == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ValueError("backend=vllm needs the vllm package: on GPU nodes pip install '.[vllm]'; on a "
                             "CPU-only machine run `make vllm-env` and use .venv-vllm (see README)")
        for k in ("tensor_parallel", "pipeline_parallel"):
            if int(b[k]) < 1:
                raise ValueError(f"backend.{k} must be >= 1, got {b[k]}")
        if dev == "cpu" and int(b.tensor_parallel) * int(b.pipeline_parallel) > 1:
            raise ValueError("backend.tensor_parallel / pipeline_parallel > 1 need GPUs (device=cuda)")
    elif dev == "cuda" and float(b.num_gpus_per_actor) > 1:
        raise ValueError("the HF backend runs one model copy per GPU (backend.num_gpus_per_actor <= 1); for a "
                         "model that needs several GPUs use backend=vllm backend.tensor_parallel=N")


def validate_common(cfg: Any) -> None:
    """Checks every scoring job shares: input format, row limit, batch size and backend."""
    if cfg.data.format not in FORMATS:
        raise ValueError(f"unknown data.format {cfg.data.format!r}; choose one of {', '.join(FORMATS)}")
    limit = cfg.data.limit
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"data.limit must be a positive row count (or null for all rows), got {limit!r}")
    bs = cfg.backend.get("batch_size", "auto")
    if bs != "auto" and (isinstance(bs, bool) or not isinstance(bs, int) or bs <= 0):
        raise ValueError(f"backend.batch_size must be auto or a positive row count, got {bs!r}")
    validate_backend(cfg)


def check_chat_template(rc: RenderConfig, model_path: Path, trust_remote_code: bool = False) -> None:
    """``template=chat`` needs the tokenizer's own chat template: refuse on the driver, before scoring,
    instead of failing every row."""
    if rc.template != "chat":
        return
    from scoring.models import load_tokenizer

    if not getattr(load_tokenizer(model_path, trust_remote_code), "chat_template", None):
        raise ValueError(f"method.template=chat needs a tokenizer with a chat template, and the one in "
                         f"{model_path} has none; choose method.template=alpaca, vicuna or none")


def validate(cfg: Any) -> None:
    """Fail at start, naming the valid choices, before any expensive work (IFD job)."""
    validate_common(cfg)
    score = variant_value(cfg, "score", "selection") if "score" in cfg.selection else None
    if score not in SCORES:
        raise ValueError(f"unknown selection.score {score!r}; choose one of {', '.join(SCORES)}")
    check_budget(cfg)
    render_config(cfg)


def check_budget(cfg: Any) -> None:
    """``selection.budget``: an integer row count or a fraction in (0, 1], checked at start."""
    from selection.budget import resolve_budget

    resolve_budget(cfg.selection.budget, 1)


def compose(name: str, overrides: list[str]) -> Any:
    """Compose ``conf/<name>.yaml`` with overrides, as the CLI does (for tests, benches, notebooks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name=name, overrides=overrides)


def encoder_spec(cfg: Any) -> dict[str, Any]:
    """The plain dict an embedding/retrieval actor builds its encoder from, plus its identity
    (what the KB artifact records, and what a query encoder must match)."""
    from jobs.outputs import model_identity
    from scoring.models import resolve_model

    e = cfg.encoder
    dev = device(cfg)
    if e.kind == "causal_lm":
        name = e.model or cfg.model.name
        path = resolve_model(name)
        identity = {"kind": e.kind, "model": model_identity(path, name), "pooling": e.pooling,
                    "max_length": int(e.max_length), "center": bool(e.center)}
    elif e.kind == "sentence_transformers":
        if not e.model:
            raise ValueError("encoder=sentence_transformers needs encoder.model=<local model directory>")
        path = Path(e.model).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"sentence-transformers model directory not found: {path}")
        identity = {"kind": e.kind, "model": {"name": str(e.model), "path": str(path)}, "center": bool(e.center)}
    else:
        raise ValueError(f"unknown encoder.kind {e.kind!r}; choose causal_lm or sentence_transformers")
    return {"kind": e.kind, "model_path": str(path), "device": dev, "dtype": cfg.model.dtype,
            "pooling": e.get("pooling", "mean"), "max_length": int(e.get("max_length", 256)),
            "max_batch_tokens": max_batch_tokens(cfg, dev), "batch_size": int(e.get("batch_size", 64)),
            "trust_remote_code": bool(cfg.model.trust_remote_code), "center": bool(e.center),
            "identity": identity}
