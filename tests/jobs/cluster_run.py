"""Run ``jobs.ifd`` on a Ray cluster of one or two nodes started here with ``ray.cluster_utils.Cluster``
(as Ray's own tests do), optionally SIGKILLing the worker node's raylet once the first shard has
committed. Run as a subprocess by ``tests/jobs/test_multinode.py`` so the cluster's Ray state never
mixes with the test session's in-process Ray; prints one JSON line. Stops only what it started
(``Cluster.shutdown`` ends the processes of the nodes it created)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from pathlib import Path


def kill_after_first_commit(shards: Path, pid: int, timeout: float = 300.0) -> threading.Thread:
    """SIGKILL ``pid`` as soon as one shard's completion record exists under ``shards``."""

    def watch() -> None:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if any(shards.glob("part-*.done")):
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    return th


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, choices=(1, 2), default=2)
    ap.add_argument("--kill-worker", action="store_true")
    ap.add_argument("--out", required=True)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from jobs import ifd
    from jobs.settings import compose
    from records.layout import SHARDS_DIR
    from records.shards import shard_nodes

    # the head has room for a second actor, so one restarted after a lost node has somewhere to go
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1) if a.nodes == 2 else None
    try:
        ray.init(address=cluster.address, configure_logging=False)
        cluster.wait_for_nodes()
        head_id = ray.get_runtime_context().get_node_id()
        cfg = compose("ifd", ["cluster=auto", f"output_dir={a.out}", "log_every_s=0", *a.overrides])
        killed = None
        if a.kill_worker and worker is not None:
            killed = worker.all_processes["raylet"][0].process.pid
            kill_after_first_commit(Path(a.out) / SHARDS_DIR, killed)
        result = ifd.run(cfg)
        print(json.dumps({
            "head": head_id,
            "worker": worker.node_id if worker is not None else None,
            "killed_raylet_pid": killed,
            "rows": result.n_rows,
            "nodes": shard_nodes(Path(a.out) / SHARDS_DIR),
        }), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
