"""Knowledge-base retrieval for RECOST (KB readers, embeddings, faiss index) — built by issue 4."""
