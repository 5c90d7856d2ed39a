"""Default verbosity: keep Ray's bookkeeping off the terminal, never a real problem.

Ray's C++ core writes straight to file descriptor 2 (``[2026-12-02 19:29:02,292 E 3127 3127]
core_worker.cc:2465: Actor ... has constructor arguments in the object store`` on every Ray Data actor
pool, ray#53727), and its log monitor forwards the raylet's lines (``(raylet) ... W ...
worker_pool.cc``). Both are in Ray's session log files anyway. :func:`filter_stderr` puts a filter on
fd 2 that drops C++-format lines at level I or W and the known-harmless E lines, and passes everything
else (Python tracebacks, warnings, F lines, a worker's own output) through unchanged.
``verbose=true`` leaves fd 2 alone.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

# "[2026-12-02 19:29:02,292 E 3127 3127] core_worker.cc:2465: ..." optionally after "(raylet) " and colours
_CPP_LINE = re.compile(rb"^(?:\x1b\[[0-9;]*m)?(?:\([^)]*\)\s*)?(?:\x1b\[[0-9;]*m)?\s*\[\d{4}-\d\d-\d\d [\d:,.]+ ([IWEF]) \d+ \d+\]")
_HARMLESS_ERRORS = (b"has constructor arguments in the object store",)
_installed: list[int] = []  # the original fd 2, once installed


def is_chatter(line: bytes) -> bool:
    """A Ray C++ log line that is bookkeeping: level I or W, or an E line known to be harmless."""
    m = _CPP_LINE.match(line)
    if not m:
        return False
    level = m.group(1)
    return level in (b"I", b"W") or (level == b"E" and any(h in line for h in _HARMLESS_ERRORS))


def _pump(read_fd: int, out_fd: int) -> None:
    buf = b""
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not is_chatter(line):
                os.write(out_fd, line + b"\n")
        if buf and not _CPP_LINE.match(buf) and b"\r" in buf:  # a progress bar redraw: pass it on now
            os.write(out_fd, buf)
            buf = b""
    if buf and not is_chatter(buf):
        os.write(out_fd, buf)


def filter_stderr() -> None:
    """Install the fd-2 filter for the rest of the process (idempotent)."""
    if _installed:
        return
    sys.stderr.flush()
    original = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    _installed.append(original)
    pump = threading.Thread(target=_pump, args=(read_fd, original), daemon=True, name="winnow-stderr")
    pump.start()
    atexit.register(_restore, original, pump)


def _restore(original: int, pump: threading.Thread) -> None:
    """At exit: fd 2 back to the terminal, and what is still in the pipe written out (an error line
    printed just before exit must not be lost)."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(original, 2)
    pump.join(timeout=1.0)  # EOF once no process holds the pipe; pending lines are written before that


def original_stderr_fd() -> int:
    """Where the terminal is (fd 2 itself when no filter is installed)."""
    return _installed[0] if _installed else 2
