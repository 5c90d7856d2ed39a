"""Ray Data actor adapters for retrieval: embed KB rows (``EmbedActor``) and, for pool rows, embed
the query, search the KB index and render the knowledge block (``RetrievalActor``).

Both load their encoder (and the index) once per actor from a plain-dict spec.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from jobs.actor import setup_actor
from jobs.specs import RetrievalSpec
from records.shards import emb_column
from retrieval.artifact import KBArtifact
from retrieval.encoder import EncoderSpec, build_encoder, finish
from retrieval.index import search
from retrieval.kb import KB_ID, QUERY, query_text
from retrieval.knowledge import knowledge_block
from records import schema


class EmbedActor:
    """``map_batches`` UDF: KB rows (``kb_id``, ``position``, ``query``) → raw embeddings."""

    def __init__(self, spec: EncoderSpec, threads: int = 1) -> None:
        setup_actor(threads)
        self.encoder = build_encoder(spec)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        E = self.encoder.embed([str(t) for t in batch[QUERY]])
        return pa.table(
            {
                KB_ID: pa.array(batch[KB_ID].tolist(), pa.string()),
                schema.POSITION: pa.array(batch[schema.POSITION], pa.int64()),
                schema.EMB: emb_column(E),
            }
        )


class RetrievalActor:
    """``map_batches`` UDF: pool records → query embedding, top-k KB neighbours, knowledge text.

    Rows that already carry an error get no knowledge and a zero embedding. With
    ``exclude_self`` a pool row never retrieves the KB copy of itself (same content hash).
    """

    def __init__(self, spec: RetrievalSpec, threads: int = 1) -> None:
        setup_actor(threads)
        self.spec = spec
        self.encoder = build_encoder(spec.encoder)
        self.kb = KBArtifact.load(spec.kb_path)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        s = self.spec
        n = len(batch[schema.ID])
        ok = np.array([e is None for e in batch[schema.ERROR]], dtype=bool)
        good = np.flatnonzero(ok)
        E = np.zeros((n, self.encoder.dim), dtype=np.float32)
        idx = np.full((n, s.k), -1, dtype=np.int64)
        sim = np.full((n, s.k), np.nan, dtype=np.float32)
        if len(good):
            texts = [
                query_text(str(batch[schema.INSTRUCTION][i]), str(batch[schema.INPUT][i] or "")) for i in good
            ]
            E[good] = finish(self.encoder.embed(texts), self.kb.center)
            own = [str(batch[schema.ID][i]).split("-")[0] if s.exclude_self else None for i in good]
            idx[good], sim[good] = search(
                self.kb.index, E[good], s.k, self.kb.ids, own, s.exclude_sim, s.nprobe
            )
        hits = [[int(j) for j in row if j >= 0] for row in idx]
        knowledge = [
            knowledge_block([self.kb.rows[j] for j in h], s.template, s.style, s.paragraph_prefix)
            for h in hits
        ]
        return pa.table(
            {
                schema.ID: pa.array(batch[schema.ID].tolist(), pa.string()),
                schema.POSITION: pa.array(batch[schema.POSITION], pa.int64()),
                schema.KNOWLEDGE: pa.array(knowledge, pa.string()),
                schema.KB_IDS: pa.array([[self.kb.ids[j] for j in h] for h in hits], pa.list_(pa.string())),
                schema.KB_SIMS: pa.array(
                    [[float(x) for x in r[: len(h)]] for r, h in zip(sim, hits)], pa.list_(pa.float32())
                ),
                schema.EMB: emb_column(E),
            }
        )
