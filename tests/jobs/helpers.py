"""Test helpers: compose the shipped Hydra configs (the same files the CLI uses)."""
from jobs.settings import compose

__all__ = ["compose"]
