"""Typed, frozen specs resolved once on the driver: what an actor needs to build its model (model,
rendering, batching policy) apart from what it takes from the cluster (:class:`Resources`).

Specs travel to Ray actors as constructor arguments (small frozen dataclasses); resources only size
the actor pool and are never seen by a scorer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from jobs.settings import device
from retrieval.encoder import EncoderSpec
from scoring.batching import BatchPolicy
from scoring.models import model_identity, resolve_model
from scoring.passes import RenderConfig
from scoring.vllm_backend import VLLMParams

# Padded tokens per forward when backend.max_batch_tokens=auto. On the 2-core CPU, 2048 ran 1.4x
# faster than 8192 and 2.8x faster than 32768 (activations stay in cache); on an H100, 65536 was the
# fastest of 16k..128k for a 1B model (see BENCHMARKS.md). For backend=vllm the same key sets the
# scheduler's tokens per step (capped further by backend.logits_budget_gib).
AUTO_BATCH_TOKENS = {"cpu": 2048, "cuda": 65536}
AUTO_PACK_WIDTH = 256  # CPU default of backend.pack_width
AUTO_VLLM_STEP = {"cpu": 2048, "cuda": 16384}


@dataclass(frozen=True)
class ModelSpec:
    """A local HF model directory and how to load it."""

    path: str
    device: str = "cpu"
    dtype: str = "auto"
    trust_remote_code: bool = False


@dataclass(frozen=True)
class ScorerSpec:
    """What a scoring (or render) actor builds its backend from."""

    model: ModelSpec
    render: RenderConfig
    backend: str = "hf"  # hf | vllm
    policy: BatchPolicy = BatchPolicy()
    head_only: bool = True  # LM head only on response positions
    compile: bool = False  # torch.compile the HF decoder
    reuse_prefix: bool = False  # HF: shared prefixes' keys/values computed once per actor (config: auto)
    chunk_rows: int | None = None  # rows scored together inside a shard (None: the whole shard)
    vllm: VLLMParams | None = None

    def identity(self) -> dict[str, Any]:
        """What the scores depend on (the run key's scoring part)."""
        return {
            "render": asdict(self.render),
            "dtype": self.model.dtype,
            "device": self.model.device,
            "head_only": self.head_only,
            "backend": self.backend,
        }


@dataclass(frozen=True)
class EmbedSpec:
    """A row-embedding actor (``jobs.embed``): the model, the rows' rendering, what to embed."""

    model: ModelSpec
    render: RenderConfig
    policy: BatchPolicy
    what: str = "full"  # full | instruction
    pooling: str = "mean"


@dataclass(frozen=True)
class RetrievalSpec:
    """A retrieval actor: the query encoder, the KB artifact and how knowledge is rendered."""

    encoder: EncoderSpec
    kb_path: str
    k: int = 2
    exclude_self: bool = True
    exclude_sim: float | None = None
    nprobe: int = 16
    template: str = "alpaca"
    style: str = "template"
    paragraph_prefix: str = "Reference: "

    def identity(self) -> dict[str, Any]:
        """What the retrieval shards depend on besides the KB and the encoder."""
        return {k: v for k, v in asdict(self).items() if k not in ("encoder", "kb_path")}


@dataclass(frozen=True)
class Resources:
    """What one stage's actors take: pool size (None = auto from the cluster), CPUs (= torch threads)
    and GPUs per actor, and CPU render actors ahead of GPU scorers."""

    actors: int | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    render_actors: int = 0  # -1: one per scoring actor

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))

    def pool(self, available: dict[str, float]) -> tuple[int, float, float]:
        """(actors, CPUs per actor, GPUs per actor) on a cluster with ``available`` resources: the
        requested pool, or (auto) one actor per ``gpus`` GPUs, else per ``cpus`` of its CPUs less one
        logical CPU for the driver."""
        if self.actors is not None:
            return self.actors, self.cpus, self.gpus
        if self.gpus:
            return max(1, int(available.get("GPU", 0) // self.gpus)), self.cpus, self.gpus
        return max(1, int((available.get("CPU", 1) - 1) // self.cpus)), self.cpus, self.gpus


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


def render_actors(b: Any, dev: str) -> int:
    """``backend.render_actors``: CPU actors that tokenise ahead of the scorers. auto = one per scoring
    actor on CUDA (-1; rendering 4,000 rows took 1.7 s of CPU against 3.1 s of compiled H100 scoring:
    done inline it stalls the GPU), none on CPU (the scorers' own cores render; nothing to overlap)."""
    r = b.get("render_actors", 0)
    if r == "auto":
        return -1 if dev == "cuda" else 0
    return int(r)


def vllm_params(cfg: Any, dev: str) -> VLLMParams:
    """The engine settings of a ``backend=vllm`` config."""
    b = cfg.backend
    return VLLMParams(
        device=dev,
        dtype=cfg.model.dtype,
        max_model_len=int(cfg.model.max_length),
        max_num_batched_tokens=vllm_step(cfg, dev),
        max_num_seqs=int(b.max_batch_rows),
        tensor_parallel=int(b.tensor_parallel),
        pipeline_parallel=int(b.pipeline_parallel),
        gpu_memory_utilization=float(b.gpu_memory_utilization),
        kv_cache_gib=float(b.kv_cache_gib),
        logits_budget_gib=float(b.logits_budget_gib),
        enable_prefix_caching=bool(b.enable_prefix_caching),
        enforce_eager=b.enforce_eager,
        trust_remote_code=bool(cfg.model.trust_remote_code),
        seed=int(cfg.get("seed", 0)),
    )


def model_spec(cfg: Any, model_path: Path) -> ModelSpec:
    return ModelSpec(str(model_path), device(cfg), cfg.model.dtype, bool(cfg.model.trust_remote_code))


def pack_width(b: Any, dev: str) -> int:
    """``backend.pack_width``: tokens per packed row of the HF scorer (0: padded rows). auto = 256 on
    CPU (measured fastest with prefix reuse, BENCHMARKS.md), off on CUDA, where block-diagonal masks
    keep SDPA off its flash kernel and the trade has not been measured."""
    w = b.get("pack_width", 0)
    if w == "auto":
        return 0 if dev == "cuda" else AUTO_PACK_WIDTH
    return int(w)


def reuse_prefix(b: Any, dev: str) -> bool:
    """``backend.reuse_prefix``: auto = on CPU (measured faster, BENCHMARKS.md), off on CUDA until
    measured there (a cached prefix changes the attention kernel SDPA picks and what torch.compile sees)."""
    r = b.get("reuse_prefix", False)
    return dev != "cuda" if r == "auto" else bool(r)


def policy(cfg: Any) -> BatchPolicy:
    dev = device(cfg)
    return BatchPolicy(
        max_batch_tokens=max_batch_tokens(cfg, dev), max_batch_rows=int(cfg.backend.max_batch_rows),
        pack_width=pack_width(cfg.backend, dev),
    )


def scorer_spec(cfg: Any, model_path: Path, rc: RenderConfig) -> ScorerSpec:
    """The scoring actors' spec for a composed config."""
    b, dev = cfg.backend, device(cfg)
    return ScorerSpec(
        model=model_spec(cfg, model_path),
        render=rc,
        backend=b.name,
        policy=policy(cfg),
        head_only=bool(b.get("head_only", True)),
        compile=compile_decoder(b, dev),
        reuse_prefix=reuse_prefix(b, dev),
        chunk_rows=None if b.batch_size == "auto" else int(b.batch_size),
        vllm=vllm_params(cfg, dev) if b.name == "vllm" else None,
    )


def scorer_resources(cfg: Any) -> Resources:
    """The scoring actors' resources: GPUs per actor (tp x pp for vLLM) on CUDA, threads on CPU."""
    b, dev = cfg.backend, device(cfg)
    return Resources(
        actors=None if b.num_actors == "auto" else int(b.num_actors),
        cpus=float(b.threads_per_actor),
        gpus=gpus_per_scorer(b) if dev == "cuda" else 0.0,
        render_actors=render_actors(b, dev),
    )


def hf_resources(cfg: Any) -> Resources:
    """Resources of an HF actor that is not a scorer (embedding, retrieval): one HF model copy per
    ``backend.num_gpus_per_actor`` under any backend, no render stage."""
    b = cfg.backend
    gpus = float(b.num_gpus_per_actor) if device(cfg) == "cuda" else 0.0
    return Resources(
        actors=None if b.num_actors == "auto" else int(b.num_actors),
        cpus=float(b.threads_per_actor),
        gpus=gpus,
    )


def embed_spec(cfg: Any, model_path: Path, rc: RenderConfig, what: str, pooling: str) -> EmbedSpec:
    return EmbedSpec(
        model=model_spec(cfg, model_path), render=rc, policy=policy(cfg), what=what, pooling=pooling
    )


def train_render(rc: RenderConfig, max_length: int) -> RenderConfig:
    """The rendering of training sequences: the scorer's, with the trainer's window."""
    return replace(rc, limits=replace(rc.limits, max_length=int(max_length)))


def encoder_spec(cfg: Any) -> tuple[EncoderSpec, dict[str, Any]]:
    """The encoder an embedding/retrieval actor builds, plus its identity (what the KB artifact
    records, and what a query encoder must match)."""
    e, dev = cfg.encoder, device(cfg)
    if e.kind == "causal_lm":
        name = e.model or cfg.model.name
        path = resolve_model(name)
        identity = {
            "kind": e.kind,
            "model": model_identity(path, name),
            "pooling": e.pooling,
            "max_length": int(e.max_length),
            "center": bool(e.center),
        }
    elif e.kind == "sentence_transformers":
        if not e.model:
            raise ValueError("encoder=sentence_transformers needs encoder.model=<local model directory>")
        path = Path(e.model).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"sentence-transformers model directory not found: {path}")
        identity = {
            "kind": e.kind,
            "model": {"name": str(e.model), "path": str(path)},
            "center": bool(e.center),
        }
    else:
        raise ValueError(f"unknown encoder.kind {e.kind!r}; choose causal_lm or sentence_transformers")
    spec = EncoderSpec(
        kind=e.kind,
        model_path=str(path),
        device=dev,
        dtype=cfg.model.dtype,
        pooling=e.get("pooling", "mean"),
        max_length=int(e.get("max_length", 256)),
        max_batch_tokens=max_batch_tokens(cfg, dev),
        batch_size=int(e.get("batch_size", 64)),
        trust_remote_code=bool(cfg.model.trust_remote_code),
        center=bool(e.center),
    )
    return spec, identity


def retrieval_spec(cfg: Any, enc: EncoderSpec, template: str, kb_dir: Path) -> RetrievalSpec:
    kb = cfg.kb
    return RetrievalSpec(
        encoder=enc,
        kb_path=str(kb_dir.resolve()),
        k=int(kb.k),
        exclude_self=bool(kb.exclude_self),
        exclude_sim=None if kb.exclude_sim is None else float(kb.exclude_sim),
        nprobe=int(kb.nprobe),
        template=template,
        style=kb.style,
        paragraph_prefix=kb.paragraph_prefix,
    )
