"""Ray entry points: one module per pipeline, each exposing ``run(cfg)`` and a thin Hydra main."""
