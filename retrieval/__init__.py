"""Retrieval for RECOST: KB rows, sentence encoders, the faiss index artifact, knowledge rendering."""
