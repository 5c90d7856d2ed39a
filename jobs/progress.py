"""Progress of a streaming stage: a bar on a terminal (rows, rows/s, ETA), else one log line at the first
update, then every ``every_s`` seconds, and at the end."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable

log = logging.getLogger("winnow.progress")


def line(label: str, done: int, total: int, elapsed: float) -> str:
    """``scored 64/300 rows (21.3%, 0.90 rows/s, eta 262 s)``."""
    rate = done / max(elapsed, 1e-9)
    eta = (total - done) / rate if rate > 0 else float("inf")
    return (
        f"{label} {done}/{total} rows ({100 * done / max(total, 1):.1f}%, {rate:.2f} rows/s, "
        f"eta {eta:.0f} s)"
    )


class Progress:
    """Count rows as batches arrive. ``tty=None``: a bar when stderr is a terminal."""

    def __init__(
        self,
        label: str,
        total: int,
        every_s: float,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], Any] = log.info,
    ) -> None:
        self.label, self.total, self.every_s = label, int(total), float(every_s)
        self.clock, self.emit = clock, emit
        self.t0 = self.last = clock()
        self.done = 0
        self.lines = 0
        self.bar = None
        if sys.stderr.isatty() if tty is None else tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=label, unit="rows", dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int) -> None:
        self.done += int(n)
        if self.bar is not None:
            self.bar.update(int(n))
            return
        now = self.clock()
        if self.lines == 0 or now - self.last >= self.every_s or self.done >= self.total:
            self.emit(line(self.label, self.done, self.total, now - self.t0))
            self.lines += 1
            self.last = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            log.info(line(self.label, self.done, self.total, self.clock() - self.t0))
