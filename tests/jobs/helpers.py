"""Compose the shipped Hydra configs in tests (the same files the CLI uses)."""
from __future__ import annotations

from typing import Any

from jobs.settings import ROOT


def compose(name: str, overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name=name, overrides=overrides)
