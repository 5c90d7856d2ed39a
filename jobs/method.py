"""What a selection method declares to the rest of Winnow (one :class:`Method` per job module; the
registry in ``jobs.registry`` collects them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from records.layout import RECORDS_DIR

# (select config, scores table, the run's manifest, the directory written to) ->
# (selected positions, selection info, the scores table with the new outcome columns);
# writes scores.parquet and the report into that directory
Reselect = Callable[[Any, pa.Table, dict[str, Any], Path], tuple[np.ndarray, dict[str, Any], pa.Table]]
# (a finished run's scores table, its manifest) -> positions of its selected rows, best first
Rank = Callable[[pa.Table, dict[str, Any]], np.ndarray]


@dataclass(frozen=True)
class Method:
    """A selection method: the scoring passes it needs, what its runs hold, how a finished run is
    re-selected without rescoring (None: it cannot be), and the run folders a re-selection into
    another directory needs beside its scores."""

    name: str  # the job name its manifests record
    passes: tuple[str, ...]  # scoring passes ((): no scoring pass)
    writes: tuple[str, ...]  # top-level names its run directory holds
    reselect: Reselect | None = None
    reselect_writes: tuple[str, ...] = ()  # what a re-selection rewrites (scores, selection, report, plots)
    linked: tuple[str, ...] = (RECORDS_DIR,)
    rank: Rank | None = None  # the method's own order of its picks (jobs.compare's compare.equalize)


def ranked_selected(table: pa.Table, key: str, descending: bool) -> np.ndarray:
    """Positions of the rows whose ``outcome`` is ``selected``, ordered by ``key`` (ties: position)."""
    outcome = table.column("outcome").to_numpy(zero_copy_only=False)
    pos = table.column("position").to_numpy()
    sel = np.flatnonzero(outcome == "selected")
    k = table.column(key).to_numpy(zero_copy_only=False).astype(np.float64)[sel]
    return pos[sel[np.lexsort((pos[sel], -k if descending else k))]].astype(np.int64)


def rank_by(key: str, descending: bool = False) -> Rank:
    """A :data:`Rank` ordering a run's picks by one of its score columns."""
    return lambda table, manifest: ranked_selected(table, key, descending)
