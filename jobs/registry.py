"""The method registry: every selection method Winnow runs, by the job name its manifests record.

Adding a method: its math in ``selection/``, its job module (``validate``, ``run`` and a ``METHOD``),
its config, its tests, and one line here.
"""

from __future__ import annotations

from jobs import baseline, cherry, curate, dedup, diverse_evol, ifd, rds, recost
from jobs.method import Method

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        ifd.METHOD,
        recost.METHOD,
        cherry.METHOD,
        diverse_evol.METHOD,
        baseline.METHOD,
        dedup.METHOD,
        rds.METHOD,
        curate.METHOD,
    )
}


def method(name: str) -> Method:
    """The registered method ``name``; an unknown one is an error naming the choices."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} in the run's manifest; known: {', '.join(METHODS)}")
    return METHODS[name]
