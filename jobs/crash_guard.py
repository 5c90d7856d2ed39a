"""Poison rows: a batch whose rows kill the actor *process* (a segfault in a kernel, the host's OOM
killer) is retried a bounded number of times, then bisected down to the rows that kill it, which get
``actor_died`` as their error reason; the job finishes.

Ray restarts a dead actor and retries its task without bound (Ray Data's default); the bound and the
bisection live here, in a journal that survives the process: before each attempt the actor records
which rows it is about to run, and after each range it records the range's results. A retried task
that finds its own journal entry knows what killed the last process and goes on from there. The
journal sits in the run directory (shared storage on a multi-node cluster), so a retry on another
node reads it too; ``jobs.pipeline.run_stage`` clears it before and after a stage.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]
JOURNAL_DIR = ".inflight"


@dataclass
class Attempt:
    """What a batch's journal entry holds between processes."""

    attempts: int = 0                                   # whole-batch attempts started
    pending: list[tuple[int, int]] | None = None        # row ranges still to run (None: whole batch)
    trying: tuple[int, int] | None = None               # the range a process was running when it died
    row_attempts: dict[int, int] = field(default_factory=dict)
    done: dict[tuple[int, int], Columns] = field(default_factory=dict)
    dead: list[int] = field(default_factory=list)       # rows that killed the process every time


class CrashGuard:
    """Runs ``fn(lo, hi) -> columns`` over a batch of ``n`` rows with the journal above.

    ``max_attempts`` bounds the whole batch's attempts (and each single row's, once bisected);
    ``blank(k)`` gives ``k`` rows of empty columns, used for dead rows, whose error column is set to
    ``reason``. Without a journal directory it just runs ``fn(0, n)``.
    """

    def __init__(self, journal: str | None, max_attempts: int, blank: Callable[[int], Columns],
                 error_column: str, reason: str) -> None:
        self.dir = Path(journal) if journal else None
        self.max_attempts = max(1, int(max_attempts))
        self.blank = blank
        self.error_column = error_column
        self.reason = reason

    def run(self, key: str, n: int, fn: Callable[[int, int], Columns]) -> Columns:
        if self.dir is None or n == 0:
            return fn(0, n)
        path = self.dir / f"{key}.pkl"
        state = self._load(path)
        if state.pending is None and state.attempts < self.max_attempts:
            state.attempts += 1
            self._save(path, state)
            out = fn(0, n)  # the process may die here; the retry finds attempts + 1
            path.unlink(missing_ok=True)
            return out
        if state.pending is None:
            log.warning("batch %s killed its actor %d times; bisecting to the rows that do", key, state.attempts)
            state.pending = halves(0, n)
        self._after_crash(state)
        while state.pending:
            state.trying = state.pending.pop(0)
            self._save(path, state)
            state.done[state.trying] = fn(*state.trying)
            state.trying = None
        self._save(path, state)
        out = self._assemble(state, n)
        path.unlink(missing_ok=True)
        return out

    def _after_crash(self, state: Attempt) -> None:
        """The range the last process died on: split it, retry a single row, or give the row up."""
        if state.trying is None:
            return
        lo, hi = state.trying
        state.trying = None
        if hi - lo > 1:
            state.pending[:0] = halves(lo, hi)
            return
        state.row_attempts[lo] = state.row_attempts.get(lo, 0) + 1
        if state.row_attempts[lo] < self.max_attempts:
            state.pending.insert(0, (lo, hi))
        else:
            log.warning("row %d of the batch killed its actor %d times: %s", lo, state.row_attempts[lo], self.reason)
            state.dead.append(lo)

    def _assemble(self, state: Attempt, n: int) -> Columns:
        parts: list[tuple[int, Columns]] = list(((lo, cols) for (lo, _), cols in state.done.items()))
        for row in state.dead:
            cols = self.blank(1)
            cols[self.error_column][0] = self.reason
            parts.append((row, cols))
        parts.sort(key=lambda p: p[0])
        out = {k: np.concatenate([c[k] for _, c in parts]) for k in parts[0][1]}
        assert len(out[self.error_column]) == n, "bisection lost rows"
        return out

    def _load(self, path: Path) -> Attempt:
        if not path.exists():
            return Attempt()
        with open(path, "rb") as f:
            return pickle.load(f)

    def _save(self, path: Path, state: Attempt) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def halves(lo: int, hi: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` cut in two (one range when it holds one row)."""
    if hi - lo <= 1:
        return [(lo, hi)]
    mid = (lo + hi) // 2
    return [(lo, mid), (mid, hi)]


def batch_key(positions: Any) -> str:
    """A batch's journal name: its first position and row count (unique within a stage)."""
    return f"b{int(positions[0]):012d}-{len(positions)}" if len(positions) else "empty"
