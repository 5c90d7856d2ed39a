"""Sentence encoders for retrieval: a causal LM's pooled hidden state (the scorer itself by default,
nothing to download) or a sentence-transformers model from a local directory.

``embed(texts) -> float32 [n, d]`` returns raw vectors; :func:`finish` centres them on the KB mean
(optional: causal-LM embeddings share a large common direction that otherwise dominates cosine) and
L2-normalises.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from selection.diversity import normalise

KINDS = ("causal_lm", "sentence_transformers")


@dataclass(frozen=True)
class EncoderSpec:
    """How to build an encoder inside an actor (a local model directory; nothing is downloaded)."""

    kind: str
    model_path: str
    device: str = "cpu"
    dtype: str = "auto"
    pooling: str = "mean"
    max_length: int = 256
    max_batch_tokens: int = 2048
    batch_size: int = 64
    trust_remote_code: bool = False
    center: bool = True


class CausalLMEncoder:
    def __init__(self, model_path: str, device: str = "cpu", dtype: str = "auto", pooling: str = "mean",
                 max_length: int = 256, max_batch_tokens: int = 2048, trust_remote_code: bool = False) -> None:
        from scoring.batching import BatchPolicy
        from scoring.embed import HFEmbedder
        from scoring.models import load_model
        from scoring.passes import pad_token, start_token

        self.tok, model = load_model(model_path, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        self.start = start_token(self.tok)
        pad = pad_token(self.tok)
        self.max_length = max_length
        self.embedder = HFEmbedder(model, pad, BatchPolicy(max_batch_tokens=max_batch_tokens), pooling)
        self.dim = self.embedder.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from scoring.embed import encode_texts

        return self.embedder.embed_ids(encode_texts(self.tok, texts, self.start, self.max_length))


class SentenceTransformerEncoder:
    def __init__(self, model_path: str, device: str = "cpu", batch_size: int = 64) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # optional dependency
            raise ImportError("encoder=sentence_transformers needs `pip install sentence-transformers` "
                              "and a model directory on local disk") from e
        self.model = SentenceTransformer(model_path, device=device)
        self.batch_size = batch_size
        self.dim = int(self.model.get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                            show_progress_bar=False), dtype=np.float32)


def build_encoder(spec: EncoderSpec) -> Any:
    """Encoder from its spec (built inside an actor)."""
    if spec.kind == "causal_lm":
        return CausalLMEncoder(spec.model_path, spec.device, spec.dtype, spec.pooling, spec.max_length,
                               spec.max_batch_tokens, spec.trust_remote_code)
    if spec.kind == "sentence_transformers":
        return SentenceTransformerEncoder(spec.model_path, spec.device, spec.batch_size)
    raise ValueError(f"unknown encoder.kind {spec.kind!r}; choose one of {', '.join(KINDS)}")


def finish(E: np.ndarray, center: np.ndarray | None) -> np.ndarray:
    """Centre (when a centre is given) and L2-normalise raw encoder outputs."""
    E = np.asarray(E, dtype=np.float32)
    return normalise(E - center[None, :] if center is not None else E)
