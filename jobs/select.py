"""Re-select from a finished run's scores.parquet without rescoring.

    python -m jobs.select scores=out/scores.parquet selection.budget=0.1 [selection.score=ifd_ppl]
    python -m jobs.select scores=out/recost/scores.parquet selection=recost selection.weight=0

The method is the one the run's manifest records; its registry entry says how it is re-selected.
Into another ``output_dir``, the run's records (and whatever else the method needs) are linked there,
so the new directory is a complete run of its own.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from jobs import card, registry
from records import rundir, writers
from records.staging import records_shards
from records.layout import CARD_FILE, MANIFEST_FILE, RECORDS_DIR, SELECTED_FILE, SELECTED_TABLE

log = logging.getLogger(__name__)


def validate(cfg: Any) -> None:
    if not Path(cfg.scores).expanduser().is_file():
        raise FileNotFoundError(f"scores file not found: {cfg.scores}")


def run(cfg: Any) -> dict[str, Any]:
    """Re-run the selection stage on ``cfg.scores``; writes selected.jsonl, report and manifest."""
    validate(cfg)
    scores = Path(cfg.scores).expanduser()
    run_dir = scores.parent
    prev = json.loads((run_dir / MANIFEST_FILE).read_text()) if (run_dir / MANIFEST_FILE).exists() else {}
    method = registry.method(prev.get("job", "ifd"))
    if method.reselect is None:
        raise ValueError(f"runs of {method.name} are not re-selected by jobs.select: rerun the job itself")
    table = pq.read_table(scores)
    writers.check_records(records_shards(run_dir), table)
    out = rundir.local_path(cfg.output_dir) if cfg.output_dir else run_dir
    in_place = out.resolve() == run_dir.resolve()
    linked = () if in_place else method.linked
    target = cfg.output_dir if cfg.output_dir and not in_place else out  # a URL is claimed as itself
    with rundir.claim(target, "select", (*method.reselect_writes, *linked), [] if in_place else [scores, run_dir]):
        for name in linked:
            writers.link_tree(run_dir / name, out / name)
        t0 = time.time()
        order, info, table = method.reselect(cfg, table, prev, out)
        n = writers.write_selected(records_shards(out), order, out / SELECTED_FILE, table, out / SELECTED_TABLE)
        summary = {
            "source_scores": str(scores.resolve()),
            **info,
            "rows": table.num_rows,
            "written": n,
            "seconds": round(time.time() - t0, 3),
        }
        writers.write_json(
            {**prev, "records_dir": RECORDS_DIR, "selection": info, "reselection": summary},
            out / MANIFEST_FILE,
        )
        if CARD_FILE in method.reselect_writes:
            card.write_card(out, {**prev, "selection": info})
    log.info("selected %d of %d rows -> %s", n, table.num_rows, out / SELECTED_FILE)
    return summary


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("select", run)


if __name__ == "__main__":
    main()
