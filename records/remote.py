"""Object storage and other fsspec URLs (``s3://``, ``gs://``, ``hf://`` where their packages are
installed) for inputs and run directories.

* An input URL (``data.path``, ``kb.path`` ...) is fetched once into a local cache
  (``$WINNOW_CACHE/inputs``) and fetched again only when the remote listing (names, sizes, ETags or
  modification times) changed; the job then reads the local copy as it reads any file.
* A run directory URL (``output_dir``) is worked on in a local mirror (``$WINNOW_CACHE/runs``): the claim
  pulls what the remote run holds (so a resume on another machine reuses its committed shards), every
  committed shard is uploaded as it commits (data files first, its ``.done`` record last: each object
  write is atomic, so the remote never holds a completion record without its data), a reset shard
  directory is mirrored at once (stale remote shards deleted before the new ``run.json`` goes up), and
  the release uploads the rest, manifest last. A remote prefix that holds objects but no Winnow mark is
  refused without reading it: a user's files are never touched. Two jobs on one run URL from two
  machines are not detected (object stores have no advisory lock); on one machine the mirror's lock
  holds.

Credentials and endpoints come from the usual places (``AWS_*`` variables, ``FSSPEC_S3_ENDPOINT_URL``
for an S3-compatible server, ``~/.aws``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

MARK = ".winnow-run.json"  # records.rundir.MARK (not imported: rundir imports this module)
LOCK = ".winnow.lock"
_FIRST = (".done",)  # pushed after the files they vouch for
_LAST = ("run.json", "manifest.json", MARK)


def cache_root() -> Path:
    return Path(os.environ.get("WINNOW_CACHE", "~/.cache/winnow")).expanduser()


def is_url(path: Any) -> bool:
    """An fsspec URL other than a plain local path (``file://`` counts as local)."""
    s = str(path)
    return "://" in s and not s.startswith("file://")


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise ValueError(f"cannot open {url}: {e} (install the filesystem's package, e.g. s3fs)") from e


def _key(url: str) -> str:
    return hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


def _stamp(info: dict[str, Any]) -> list[Any]:
    return [info.get("size"), str(info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified"))]


def listing(fs: Any, root: str) -> dict[str, list[Any]]:
    """Relative name -> (size, version stamp) of every file at or under ``root``."""
    root = root.rstrip("/")
    fs.invalidate_cache()  # another machine (or a user) may have changed the store since we last looked
    if fs.isfile(root):
        return {"": _stamp(fs.info(root))}
    found = fs.find(root, detail=True)
    return {p[len(root) :].lstrip("/"): _stamp(i) for p, i in sorted(found.items()) if i.get("type") != "directory"}


def fetch(url: str) -> Path:
    """A local copy of the remote file or directory ``url`` (cached; refreshed when it changed)."""
    fs, root = _fs(url)
    if not fs.exists(root):
        raise FileNotFoundError(f"input not found: {url}")
    now = listing(fs, root)
    base = cache_root() / "inputs" / _key(url)
    name = root.rstrip("/").split("/")[-1] or "input"
    dest, stamp = base / name, base / "source.json"
    if dest.exists() and stamp.exists() and json.loads(stamp.read_text()) == now:
        log.info("input %s: using the cached copy %s", url, dest)
        return dest
    tmp = base / (name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.unlink(missing_ok=True)
    base.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s (%d files) into %s", url, len(now), base)
    for rel in now:
        target = tmp / rel if rel else tmp
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(f"{root.rstrip('/')}/{rel}" if rel else root, str(target))
    if dest.is_dir():
        shutil.rmtree(dest)
    elif dest.exists():
        dest.unlink()
    os.replace(tmp, dest)
    stamp.write_text(json.dumps(now))
    return dest


def _order(rel: str) -> int:
    name = rel.rsplit("/", 1)[-1]
    return 2 if name in _LAST else 1 if name.endswith(_FIRST) else 0


@dataclass
class Mirror:
    """A run directory URL and the local directory a job works in."""

    url: str
    local: Path
    pushed: dict[str, list[int]] = field(default_factory=dict)  # rel -> [size, mtime_ns] last uploaded

    @property
    def state_file(self) -> Path:
        return self.local.with_name(self.local.name + ".pushed.json")

    def _remote(self, rel: str = "") -> str:
        _, root = _fs(self.url)
        return f"{root.rstrip('/')}/{rel}" if rel else root.rstrip("/")

    def check_owner(self) -> dict[str, list[Any]]:
        """The remote run's listing (for :meth:`pull`); a prefix with objects but without Winnow's mark
        is a user's: refused, never read."""
        fs, root = _fs(self.url)
        if not fs.exists(root):
            return {}
        names = listing(fs, root)
        if names and MARK not in names:
            first = sorted(names)[0] or root
            raise ValueError(
                f"output_dir {self.url} is not empty and was not made by Winnow ({len(names)} objects, "
                f"e.g. {first!r}); choose a new or empty location"
            )
        return names

    def pull(self, names: dict[str, list[Any]]) -> int:
        """Download what the remote run holds (``names``: its :meth:`check_owner` listing) and the
        mirror lacks or holds in another size."""
        fs, _ = _fs(self.url)
        n = 0
        for rel, (size, _) in names.items():
            if rel in ("", LOCK):
                continue
            target = self.local / rel
            if target.is_file() and target.stat().st_size == size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".pull")
            fs.get_file(self._remote(rel), str(tmp))
            os.replace(tmp, target)
            n += 1
        for rel in names:
            p = self.local / rel
            if rel and p.is_file():
                st = p.stat()
                self.pushed[rel] = [st.st_size, st.st_mtime_ns]
        self._save()
        if n:
            log.info("pulled %d files of %s into %s", n, self.url, self.local)
        return n

    def upload(self, paths: Iterable[Path]) -> None:
        """Upload these files of the mirror now, in commit order (data, then .done, then run records)."""
        fs, _ = _fs(self.url)
        rels = sorted({p.resolve().relative_to(self.local.resolve()).as_posix() for p in paths}, key=lambda r: (_order(r), r))
        for rel in rels:
            p = self.local / rel
            if not p.is_file():
                continue
            fs.put_file(str(p), self._remote(rel))
            st = p.stat()
            self.pushed[rel] = [st.st_size, st.st_mtime_ns]
        self._save()

    def delete_missing(self, under: str = "") -> None:
        """Delete remote files this mirror pushed that no longer exist locally (under ``under``)."""
        fs, _ = _fs(self.url)
        gone = [r for r in self.pushed if r.startswith(under) and not (self.local / r).is_file()]
        for rel in gone:
            try:
                fs.rm_file(self._remote(rel))
            except FileNotFoundError:
                pass
            del self.pushed[rel]
        if gone:
            self._save()

    def push(self) -> None:
        """Mirror the whole local run to the remote: stale files deleted, changed files uploaded."""
        self.delete_missing()
        changed = []
        for p in sorted(self.local.rglob("*")):
            if not p.is_file() or p.name == LOCK or p.name.endswith((".tmp", ".pull")):
                continue
            rel = p.relative_to(self.local).as_posix()
            st = p.stat()
            if self.pushed.get(rel) != [st.st_size, st.st_mtime_ns]:
                changed.append(p)
        self.upload(changed)
        log.info("pushed %d changed files to %s", len(changed), self.url)

    def _save(self) -> None:
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(self.pushed))
        os.replace(tmp, self.state_file)


_ACTIVE: dict[str, Mirror] = {}  # resolved mirror path -> Mirror, while a job holds it


def mirror_for(url: str) -> Mirror:
    """The local mirror of run directory ``url`` (not yet pulled)."""
    local = cache_root() / "runs" / _key(url) / "run"
    m = Mirror(url, local)
    if m.state_file.exists():
        m.pushed = json.loads(m.state_file.read_text())
    return m


def activate(m: Mirror) -> None:
    _ACTIVE[str(m.local.resolve())] = m


def deactivate(m: Mirror) -> None:
    _ACTIVE.pop(str(m.local.resolve()), None)


def _owner(path: Path) -> Mirror | None:
    p = path.resolve()
    for root, m in _ACTIVE.items():
        if str(p) == root or str(p).startswith(root + os.sep):
            return m
    return None


def committed(paths: Iterable[Path]) -> None:
    """Files just committed in a run directory: uploaded now when that directory mirrors a URL."""
    paths = list(paths)
    m = _owner(paths[0]) if paths else None
    if m is not None:
        m.upload(paths)


def reset(directory: Path) -> None:
    """A run subdirectory was recreated (new run key): mirror it now, stale remote shards first."""
    m = _owner(directory)
    if m is not None:
        m.delete_missing(directory.resolve().relative_to(m.local.resolve()).as_posix() + "/")
        m.upload(p for p in directory.rglob("*") if p.is_file())
