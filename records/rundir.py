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

from records import remote

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
    mirror: "remote.Mirror | None" = None  # output_dir was a URL: path is its local mirror

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
            if self.mirror is not None:  # before the lock goes: the remote gets the finished (or partial) run
                try:
                    self.mirror.push()
                finally:
                    remote.deactivate(self.mirror)
            if held[2] is not None:
                logging.getLogger().removeHandler(held[2])
                held[2].close()
            os.close(held[0])  # closing the descriptor releases the flock
            del _HELD[key]


def _under(p: Path, target: Path) -> bool:
    return p == target or target in p.parents


def local_path(out: Path | str) -> Path:
    """Where a job works for ``output_dir``: the directory itself, or a URL's local mirror."""
    if remote.is_url(out):
        return remote.mirror_for(str(out)).local
    return Path(out).expanduser()


def check_inputs(out: Path | str, writes: Iterable[str], inputs: Iterable[Path | str | None]) -> None:
    """Refuse an input that is (or lies inside) anything the job writes or stages under ``out``."""
    base = local_path(out).resolve()
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
    """Check, create, lock and mark ``out`` for ``job``, which will write the top-level ``writes``.
    A URL (``s3://...``) is claimed through its local mirror (``records.remote``)."""
    url = str(out) if remote.is_url(out) else None
    out = local_path(out)
    writes = [*writes, LOG_FILE] if log_file else list(writes)
    check_inputs(out, writes, inputs)
    key = str(out.resolve())
    if key in _HELD:  # re-entrant: a job running another job into the directory it holds
        _HELD[key][1] += 1
        return RunDir(out, job, _own(out, job, writes))
    mirror, names = None, {}
    if url is not None:
        mirror = remote.mirror_for(url)
        names = mirror.check_owner()  # a user's objects: refused before anything is read or written
    _prepare_dir(out)
    fd = _lock(out)
    try:
        if mirror is not None:
            mirror.pull(names)  # under the lock: the remote run's committed shards, for resume
        owned = _own(out, job, writes)
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = [fd, 1, _log_handler(out) if log_file else None]
    if mirror is not None:
        remote.activate(mirror)
    return RunDir(out, job, owned, mirror)
