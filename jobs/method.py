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
