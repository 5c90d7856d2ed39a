"""A run directory belongs to Winnow or to nobody: the mark, the lock and the input check.

Every job claims its ``output_dir`` before it writes anything:

* a new or empty directory is **marked** (``.winnow-run.json``); a non-empty directory without the
  mark is refused, so a user's own files are never touched;
* top-level names the job writes are recorded in the mark's ``owned`` list; a name that exists but is
  not owned (a user's ``report.html`` dropped into a run directory) is refused, never replaced;
* an advisory ``fcntl`` lock (``.winnow.lock``, holding the PID) is taken for the whole job: a second
  job on the same directory is refused with the holder's PID;
* an input that lies at or under a path the job writes or stages is refused before anything happens.

Winnow's working subdirectories (``records/``, ``shards/``, ``stages/`` ...) are its own: what is
inside them is Winnow's to replace. The lock is re-entrant within one process (``jobs.cherry`` runs
the IFD job into the directory it holds).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

MARK = ".winnow-run.json"
LOCK = ".winnow.lock"
LOG_FILE = "winnow.log"
_HELD: dict[str, list] = {}  # realpath -> [fd, refcount, log handler]


@dataclass
class RunDir:
    """A claimed output directory; release it (or leave the ``with`` block) when the job ends."""

    path: Path
    job: str
    owned: list[str] = field(default_factory=list)

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        key = str(self.path.resolve())
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            if held[2] is not None:
                logging.getLogger().removeHandler(held[2])
                held[2].close()
            os.close(held[0])  # closing the descriptor releases the flock
            del _HELD[key]


def _under(p: Path, target: Path) -> bool:
    return p == target or target in p.parents


def check_inputs(out: Path, writes: Iterable[str], inputs: Iterable[Path | str | None]) -> None:
    """Refuse an input that is (or lies inside) anything the job writes or stages under ``out``."""
    base = out.expanduser().resolve()
    targets = [base / w for w in (*writes, MARK, LOCK, LOG_FILE)]
    for raw in inputs:
        if raw is None or str(raw) == "":
            continue
        p = Path(raw).expanduser().resolve()
        for t in targets:
            if _under(p, t):
                raise ValueError(
                    f"input {p} lies inside {t}, which this job writes; choose another output_dir"
                )


def _read_mark(out: Path) -> dict:
    try:
        return json.loads((out / MARK).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{out / MARK} is unreadable ({e}); this is not a usable Winnow run directory"
        ) from e


def _foreign_entries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name != LOCK)


def _prepare_dir(out: Path) -> None:
    """Create ``out`` or check that it is a directory we may use; one clear error otherwise."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir {out} exists and is not a directory")
    foreign = _foreign_entries(out) if out.exists() and not (out / MARK).exists() else []
    if foreign:
        raise ValueError(
            f"output_dir {out} is not empty and was not made by Winnow "
            f"({len(foreign)} entries, e.g. {foreign[0]!r}); choose a new or empty directory"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create output_dir {out}: {e.strerror or e}") from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"output_dir {out} is not writable")


def _lock(out: Path) -> int:
    try:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ValueError(f"output_dir {out} is not writable ({e.strerror or e})") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ValueError(
            f"output_dir {out} is in use by another Winnow job (pid {holder}); "
            f"wait for it to finish or choose another output_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _own(out: Path, job: str, writes: Iterable[str]) -> list[str]:
    """Record ``writes`` as owned in the mark (creating it); refuse names a user put there."""
    from records.writers import write_json

    mark = _read_mark(out) if (out / MARK).exists() else None
    if mark is None:
        if _foreign_entries(out):  # someone wrote into the directory between the check and the lock
            raise ValueError(
                f"output_dir {out} is not empty and was not made by Winnow; choose a new or empty directory"
            )
        mark = {
            "tool": "winnow",
            "created_by": job,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "owned": [],
        }
    owned = list(mark.get("owned", []))
    for name in writes:
        if name not in owned and os.path.lexists(out / name):
            raise ValueError(
                f"{out / name} was not written by Winnow; refusing to replace it "
                f"(move it away or choose another output_dir)"
            )
    owned += [w for w in writes if w not in owned]
    write_json({**mark, "owned": owned, "last_job": job}, out / MARK)
    return owned


def _log_handler(out: Path) -> logging.Handler:
    h = logging.FileHandler(out / LOG_FILE, encoding="utf-8")
    h.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(h)
    return h


def claim(
    out: Path | str,
    job: str,
    writes: Iterable[str],
    inputs: Iterable[Path | str | None] = (),
    log_file: bool = True,
) -> RunDir:
    """Check, create, lock and mark ``out`` for ``job``, which will write the top-level ``writes``."""
    out = Path(out).expanduser()
    writes = [*writes, LOG_FILE] if log_file else list(writes)
    check_inputs(out, writes, inputs)
    key = str(out.resolve())
    if key in _HELD:  # re-entrant: a job running another job into the directory it holds
        _HELD[key][1] += 1
        return RunDir(out, job, _own(out, job, writes))
    _prepare_dir(out)
    fd = _lock(out)
    try:
        owned = _own(out, job, writes)
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = [fd, 1, _log_handler(out) if log_file else None]
    return RunDir(out, job, owned)
