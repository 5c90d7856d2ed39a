"""Ray edge: start/connect Ray, stream record shards through the scoring actor pool."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from jobs.progress import Progress
from jobs.specs import Resources
from records import schema

log = logging.getLogger(__name__)


# Ray Data's console lines that are bookkeeping, not problems (shown with verbose=true)
_RAY_DATA_CHATTER = ("Progress bars disabled", "Starting execution", "Execution plan", "Registered dataset logger")


class _Chatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_RAY_DATA_CHATTER)


def quiet_ray() -> None:
    """Default verbosity: Ray's C++ bookkeeping lines kept off the terminal (``jobs.quiet``; its files
    keep everything), Ray Data's console shows warnings, minus its bookkeeping lines."""
    from jobs.quiet import filter_stderr

    filter_stderr()
    import ray.data  # noqa: F401 - configures Ray Data's logging; adjusted below

    for h in logging.getLogger("ray.data").handlers:
        if not h.__class__.__name__.endswith("FileHandler"):
            h.setLevel(logging.WARNING)
            if not any(isinstance(f, _Chatter) for f in h.filters):
                h.addFilter(_Chatter())


def init_ray(cluster: Any, verbose: bool = False) -> None:
    """Start Ray in-process (``address: local``) or connect to a running cluster (``auto``/URL)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no ~/.ray/auth_token for local runs
    if not verbose:
        quiet_ray()
    if not ray.is_initialized():
        if cluster.address == "local":
            ray.init(
                num_cpus=local_cpus(cluster),
                include_dashboard=bool(cluster.include_dashboard),
                log_to_driver=True,
                configure_logging=False,
            )
        else:
            ray.init(address=cluster.address, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False


def pool_size(resources: Resources) -> tuple[int, float, float]:
    """(actors, CPUs per actor, GPUs per actor) on the running cluster (:meth:`Resources.pool`)."""
    import ray

    return resources.pool(ray.cluster_resources())


def local_cpus(cluster: Any) -> int:
    """Logical CPUs of an in-process Ray (``address: local``): the cores, plus one that
    :meth:`Resources.pool` leaves to the driver, not to actors."""
    return int(cluster.num_cpus or os.cpu_count() or 1) + 1


def read_shards(batch: pa.Table) -> pa.Table:
    """Ray Data task: load the shard file(s) named in ``batch`` (record columns by default), with the
    columns of a row-aligned companion shard (``extra``, e.g. the retrieval stage's) appended."""
    import pyarrow.parquet as pq

    tables = []
    for item in batch.to_pylist():
        t = pq.read_table(item["shard"], columns=item.get("columns") or schema.RECORD_COLUMNS)
        if item.get("extra"):
            e = pq.read_table(item["extra"], columns=[schema.POSITION, *item["extra_columns"]])
            if e.column(schema.POSITION) != t.column(schema.POSITION):
                raise RuntimeError(f"{item['extra']} is not row-aligned with {item['shard']}")
            for name in item["extra_columns"]:
                t = t.append_column(name, e.column(name))
        tables.append(t)
    return pa.concat_tables(tables)


def node_tagged(actor_cls: type) -> type:
    """``actor_cls`` whose every output batch carries the Ray node id of the actor that produced it
    (``schema.NODE_ID``; the shard commit moves it into the ``.done`` record): where each shard ran,
    for multi-node runs and the lost-node test."""

    class NodeTagged(actor_cls):  # type: ignore[valid-type, misc]
        def __call__(self, batch: dict[str, Any]) -> Any:
            import ray

            out = super().__call__(batch)
            node = ray.get_runtime_context().get_node_id()
            if isinstance(out, pa.Table):
                return out.append_column(schema.NODE_ID, pa.array([node] * out.num_rows, pa.string()))
            out[schema.NODE_ID] = np.array([node] * len(out[schema.POSITION]), dtype=object)
            return out

    NodeTagged.__name__ = NodeTagged.__qualname__ = actor_cls.__name__
    return NodeTagged


def shard_item(
    shard: str, columns: list[str] | None = None, extra: str = "", extra_columns: list[str] | None = None
) -> dict[str, Any]:
    """One unit of work for :func:`stream` (a uniform dict, as Ray Data wants one schema)."""
    return {
        "shard": shard,
        "columns": columns or list(schema.RECORD_COLUMNS),
        "extra": extra,
        "extra_columns": extra_columns or [],
    }


def run_stage(
    shard_dir: Path,
    bounds: list[tuple[int, int]],
    items: list[dict[str, Any]],
    actor_cls: type,
    spec: Any,
    resources: Resources,
    cfg: Any,
    label: str,
    emb_dir: Path | None = None,
    emb_dtype: Any = np.float16,
) -> tuple[int, int]:
    """Run ``actor_cls(spec, threads)`` over every shard without a completion record in ``shard_dir``
    and commit each shard as it completes (embeddings, if any, as ``emb_dtype`` under ``emb_dir``);
    returns (shards reused, shards processed)."""
    from jobs.crash_guard import JOURNAL_DIR
    from records import shards

    journal = shard_dir / JOURNAL_DIR
    shutil.rmtree(journal, ignore_errors=True)  # a killed driver's entries describe another attempt
    done = shards.done_shards(shard_dir)
    todo = [k for k in range(len(items)) if k not in done]
    if done:
        log.info("resuming: %d of %d shards already done in %s", len(done), len(items), shard_dir)
    collector = shards.ShardCollector(shard_dir, bounds, todo, emb_dir, emb_dtype)
    if todo:
        init_ray(cfg.cluster, bool(cfg.get("verbose", False)))
        n_todo = sum(bounds[k][1] for k in todo)
        batches = stream([items[k] for k in todo], actor_cls, spec, resources, cfg, n_todo, label, journal)
        for batch in batches:
            collector.add(batch)
    collector.finish()
    shutil.rmtree(journal, ignore_errors=True)
    return len(done), len(todo)


def stream(
    items: list[dict[str, Any]],
    actor_cls: type,
    spec: Any,
    resources: Resources,
    cfg: Any,
    n_rows: int,
    label: str,
    journal: Path | None = None,
) -> Iterator[pa.Table]:
    """Stream shards through a pool of ``actor_cls`` sized by ``resources``, logging progress. An actor
    class that takes a crash ``journal`` (``JOURNALED``) gets it, with ``backend.max_task_retries``."""
    import ray

    actors, cpus, gpus = pool_size(resources)
    log.info(
        "%s: %d rows in %d shards with %d actor(s) x %.0f CPU / %.0f GPU",
        actor_cls.__name__,
        n_rows,
        len(items),
        actors,
        cpus,
        gpus,
    )
    # one block per shard: the shard list is the deterministic partitioning of the input
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    # reading a shard is light I/O: it must never wait for CPUs the actors hold (deadlock on a node
    # whose CPUs all go to actors, e.g. one 2-thread actor on a 2-CPU head); capped so that a few shards
    # are read ahead of the actors instead of one worker process per shard
    ds = ds.map_batches(
        read_shards,
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=0,
        compute=ray.data.TaskPoolStrategy(size=max(1, min(2 * actors, len(items)))),
    )
    # batch_size=None: one actor call per block, i.e. per shard. A row's batch companions then depend
    # only on its shard, never on arrival order, so scores are bit-identical run after run.
    renderers = actors if resources.render_actors < 0 else resources.render_actors
    if renderers and getattr(actor_cls, "PRE_RENDERED", False):
        from jobs.actor import RenderActor

        # tokenisation on CPU actors, streamed ahead of the scorers (1 CPU each)
        log.info("render stage: %d CPU actor(s)", renderers)
        ds = ds.map_batches(
            RenderActor,
            fn_constructor_args=(spec, 1),
            batch_size=None,
            compute=ray.data.ActorPoolStrategy(size=renderers),
            num_cpus=1,
            batch_format="numpy",
        )
    kwargs = {}
    if journal is not None and getattr(actor_cls, "JOURNALED", False):
        kwargs = {"journal": str(journal), "max_attempts": int(cfg.backend.get("max_task_retries", 2)) + 1}
    out = ds.map_batches(
        node_tagged(actor_cls),
        fn_constructor_args=(spec, resources.threads),
        fn_constructor_kwargs=kwargs,
        batch_size=None,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus,
        num_gpus=gpus,
        batch_format="numpy",
    )  # Ray Data spreads the actors over the nodes, restarts dead ones and retries their tasks by default
    progress = Progress(label, n_rows, float(cfg.log_every_s))
    try:
        for batch in out.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield batch  # committed by the caller before it counts
            progress.update(batch.num_rows)
    finally:
        progress.close()
