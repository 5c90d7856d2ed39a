"""The run skeleton every pool job uses: validate → resolve the model → inspect the input → claim the
run directory → timed stages → manifest.

    with skeleton.pool_run(cfg, "ifd", WRITES, validate) as run:
        staged = run.stage()
        ...
        run.write_manifest(staged, model=..., selection=...)

Everything that can fail on a user's mistake (config, model, template, a missing, damaged or empty
input, an input inside the run) fails before the run directory is created or touched.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from jobs import card, settings
from records import remote, rundir, writers
from records.layout import CARD_FILE, MANIFEST_FILE, RECORDS_DIR
from records.staging import InputInfo, Staged, inspect_input, stage_input
from scoring.models import resolve_model
from scoring.passes import RenderConfig

log = logging.getLogger(__name__)


@dataclass
class Result:
    """What a run produced (returned by every job's ``run``, also to tests)."""

    output_dir: Path
    n_rows: int
    n_selected: int
    counts: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record the wall time of a stage in ``timings`` (seconds) and log it."""
    t0 = time.time()
    yield
    timings[name] = round(time.time() - t0, 3)
    log.info("stage %s: %.1f s", name, timings[name])


def versions() -> dict[str, str]:
    """Installed versions of what the scores depend on (for the manifest)."""
    import importlib.metadata as md

    out = {}
    for pkg in ("winnow", "torch", "transformers", "ray", "pyarrow", "faiss-cpu", "hydra-core"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def as_dict(node: Any) -> Any:
    """A config node as plain containers (for manifests and run keys)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


@dataclass
class PoolRun:
    """A pool job inside its claimed run directory."""

    cfg: Any
    job: str
    out: Path
    data_path: Path
    src: InputInfo
    model_path: Path
    rc: RenderConfig
    timings: dict[str, float]
    writes: tuple[str, ...] = ()

    def with_model(self, cfg: Any, model_path: Path) -> "PoolRun":
        """The same run scored with another model (Cherry's pre-experienced one)."""
        return replace(self, cfg=cfg, model_path=model_path)

    def stage(self, out: Path | None = None) -> Staged:
        """Parse the input into ``records/`` under ``out`` (default: the run directory)."""
        d = self.cfg.data
        return stage_input(
            self.data_path,
            out or self.out,
            d.format,
            settings.fields(self.cfg),
            bool(d.drop_duplicates),
            d.limit,
            d.rows_per_shard,
            self.src,
        )

    def input_parts(self) -> dict[str, Any]:
        """What staging depends on: the input's digest, parsing options and partitioning (not its path)."""
        data = {k: v for k, v in as_dict(self.cfg.data).items() if k != "path"}
        return {
            "input_sha256": self.src.sha256,
            "data": data,
            "format": self.src.format,
            "rows": self.src.n_rows,
            "rows_per_shard": self.src.rows_per_shard,
        }

    def manifest(self, staged: Staged, **extra: Any) -> dict[str, Any]:
        """The manifest every job writes, with the job's own fields in ``extra``. Paths into the run are
        relative to it."""
        return {
            "job": self.job,
            "config": as_dict(self.cfg),
            "input": {
                "path": str(self.data_path.resolve()),
                **({"url": str(self.cfg.data.path)} if remote.is_url(self.cfg.data.path) else {}),
                "sha256": staged.sha256,
                "format": staged.format,
                "rows": staged.n_rows,
                "read_outcomes": dict(staged.errors),
            },
            "records_dir": RECORDS_DIR,
            **extra,
            "timings_s": self.timings,
            "versions": versions(),
        }

    def write_manifest(self, staged: Staged, **extra: Any) -> dict[str, Any]:
        m = self.manifest(staged, **extra)
        writers.write_json(m, self.out / MANIFEST_FILE)
        if CARD_FILE in self.writes:
            card.write_card(self.out, m)
        return m


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_FROM_BYTES = 256 << 10


HEAP_UP_TO_BYTES = 32 << 20  # glibc's own ceiling for its dynamic threshold


def _mmap_threshold(nbytes: int) -> None:
    """glibc's ``M_MMAP_THRESHOLD`` (blocks this large or larger get their own mapping)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c")).mallopt(M_MMAP_THRESHOLD, nbytes)
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to tune
        log.debug("mallopt unavailable; the allocator keeps its defaults")


@contextmanager
def compute_heap() -> Iterator[None]:
    """Inside the block, blocks under 32 MiB come from the heap again (glibc's default ceiling): a
    driver-side torch loop (k-center) reuses its temporaries instead of mapping and faulting in fresh
    pages on every step, which cost it 12% (``bench.heap``: 200k x 576, k = 300). The driver's
    threshold is restored after."""
    _mmap_threshold(HEAP_UP_TO_BYTES)
    try:
        yield
    finally:
        _mmap_threshold(MMAP_FROM_BYTES)


def release_freed_memory() -> None:
    """Make the driver's large blocks (≥ 256 KiB) come from their own mappings, returned to the OS
    when freed. glibc's default raises that threshold to 32 MiB after the first free, so the
    driver's many few-megabyte numpy/Arrow temporaries (per shard, per top-k cut) come from the heap
    and stay there: peak memory grew with the pool (bench.scale --driver). The driver only: the
    actors keep glibc's default (a forward's tensors would pay page faults every batch). Also makes
    pyarrow allocate from the system allocator where something used pyarrow before ``jobs/__init__``
    could choose it."""
    import pyarrow as pa

    _mmap_threshold(MMAP_FROM_BYTES)
    if pa.default_memory_pool().backend_name != "system":  # pyarrow was in use before jobs/__init__ ran
        pa.set_memory_pool(pa.system_memory_pool())


@contextmanager
def pool_run(
    cfg: Any,
    job: str,
    writes: Iterable[str],
    validate: Callable[[Any], None],
    passes: tuple[str, ...] = ("cond", "uncond"),
    inputs: Iterable[Path | None] = (),
) -> Iterator[PoolRun]:
    """The shared start of every pool job; the run directory is held (locked) inside the block."""
    release_freed_memory()
    validate(cfg)
    writes = tuple(writes)
    rc = settings.render_config(cfg, passes)
    timings: dict[str, float] = {}
    with timed(timings, "model"):
        model_path = resolve_model(cfg.model.name)
    settings.check_chat_template(rc, model_path, bool(cfg.model.trust_remote_code))
    data_path = settings.data_path(cfg)
    inputs = [data_path, *inputs]
    rundir.check_inputs(str(cfg.output_dir), writes, inputs)  # before the input is even read
    with timed(timings, "inspect"):  # a missing, damaged or empty input fails before any directory exists
        src = inspect_input(data_path, cfg.data.format, cfg.data.limit, cfg.data.rows_per_shard)
    with rundir.claim(cfg.output_dir, job, writes, inputs) as claimed:
        yield PoolRun(cfg, job, claimed.path, data_path, src, model_path, rc, timings, writes)
