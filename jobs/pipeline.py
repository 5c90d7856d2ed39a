"""Ray edge: start/connect Ray, stream record shards through the scoring actor pool."""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Iterator

import pyarrow as pa

from scoring import schema

log = logging.getLogger(__name__)


def init_ray(cluster: Any) -> None:
    """Start Ray in-process (``address: local``) or connect to a running cluster (``auto``/URL)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no ~/.ray/auth_token for local runs
    if not ray.is_initialized():
        if cluster.address == "local":
            cpus = cluster.num_cpus or os.cpu_count() or 1
            # one logical CPU beyond the cores: pool_size leaves it to the driver, not to actors
            ray.init(num_cpus=cpus + 1, include_dashboard=bool(cluster.include_dashboard),
                     log_to_driver=True, configure_logging=False)
        else:
            ray.init(address=cluster.address)
    ray.data.DataContext.get_current().enable_progress_bars = False


def pool_size(backend: Any, device: str) -> tuple[int, float, float]:
    """(actors, CPUs per actor, GPUs per actor) from the backend config and the cluster."""
    import ray

    res = ray.cluster_resources()
    gpus = float(backend.num_gpus_per_actor) if device == "cuda" else 0.0
    cpus = float(backend.threads_per_actor)
    if backend.num_actors != "auto":
        return int(backend.num_actors), cpus, gpus
    if gpus:
        return max(1, int(res.get("GPU", 0) // gpus)), cpus, gpus
    return max(1, int((res.get("CPU", 1) - 1) // cpus)), cpus, gpus


def read_shards(batch: pa.Table) -> pa.Table:
    """Ray Data task: load the record columns of the shard file(s) named in ``batch``."""
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(p, columns=schema.RECORD_COLUMNS)
                             for p in batch.column("shard").to_pylist()])


def rows_per_call(batch_size: Any, n_rows: int, actors: int) -> int:
    """Rows per actor call: as configured, or (auto) two calls per actor, clamped to 16..256."""
    if batch_size != "auto":
        return int(batch_size)
    return max(16, min(256, math.ceil(n_rows / (2 * actors))))


def iter_scored(shards: list[str], spec: dict[str, Any], cfg: Any, n_rows: int) -> Iterator[pa.Table]:
    """Stream the scoring actors' output over the given record shards, logging progress."""
    import ray

    from jobs.actor import ScoringActor

    actors, cpus, gpus = pool_size(cfg.backend, spec["device"])
    log.info("scoring %d rows in %d shards with %d actor(s) x %.0f CPU / %.0f GPU",
             n_rows, len(shards), actors, cpus, gpus)
    # one block per record shard: the shard list is the deterministic partitioning of the input
    ds = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards))
    # reading a shard is light I/O: it must never wait for CPUs the scoring actors hold (deadlock on
    # a node whose CPUs all go to actors, e.g. one 2-thread actor on a 2-CPU head)
    ds = ds.map_batches(read_shards, batch_size=1, batch_format="pyarrow", num_cpus=0)
    out = ds.map_batches(
        ScoringActor, fn_constructor_args=(spec,), batch_size=rows_per_call(cfg.backend.batch_size, n_rows, actors),
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus, num_gpus=gpus,
        batch_format="numpy")  # Ray Data restarts dead actors and retries their tasks by default
    done, t0, last = 0, time.time(), time.time()
    for batch in out.iter_batches(batch_size=None, batch_format="pyarrow"):
        done += batch.num_rows
        yield batch
        if time.time() - last >= float(cfg.log_every_s) or done == n_rows:
            rate = done / max(time.time() - t0, 1e-9)
            log.info("scored %d/%d rows (%.1f%%, %.2f rows/s, eta %.0f s)", done, n_rows,
                     100 * done / max(n_rows, 1), rate, (n_rows - done) / max(rate, 1e-9))
            last = time.time()
