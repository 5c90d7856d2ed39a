"""Supervised fine-tuning of a causal LM on selected rows (pure torch; Ray Train wraps it in jobs/train.py)."""
