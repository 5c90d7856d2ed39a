"""Cherry LLM, the full pipeline with the "pre-experienced" model.

    python -m jobs.cherry data.path=pool.jsonl selection.budget=0.05 output_dir=out/

Stages, each kept under ``output_dir/stages/`` so a user can stop after any of them or swap in a
model of their own (``cherry.pre_experienced=<dir>``):

1. ``embed``: one forward per row with the base model gives the instruction embedding (mean of the
   last hidden state over the formatted instruction) and the instruction perplexity.
2. ``picks.json``: faiss k-means (``cherry.clusters``) → per cluster, rows inside the
   ``cherry.band`` percentile band of instruction perplexity, ``cherry.per_cluster`` evenly spaced.
3. ``pre_experienced/``: the base model fine-tuned on those picks for ``train.epochs`` (1) on Ray Train.
4. IFD of the whole pool with the pre-experienced model (the ``jobs.ifd`` job) → top budget.
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from jobs import ifd, outputs, rundir, settings, shards
from jobs.diverse_evol import subset_rows
from jobs.ifd import Result, timed
from jobs.embed import embed_rows
from jobs.staging import inspect_input, stage_input
from jobs.train import fine_tune, train_params
from scoring.models import resolve_model
from selection.kmeans import cherry_cluster_picks, kmeans
from selection.scores import perplexity

log = logging.getLogger(__name__)

STAGES = "stages"
WRITES = (*ifd.WRITES, STAGES)


def embed_instructions(staged: Any, base: Path, out: Path, cfg: Any, rc_spec: dict[str, Any]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings [n, d], instruction perplexity [n], valid mask [n]) for every staged row."""
    t, E = embed_rows(staged, base, out / "embed", out / "embeddings", cfg, rc_spec, "instruction",
                      cfg.cherry.pooling)
    ppl = perplexity(t.column("instr_nll_sum").to_numpy(zero_copy_only=False), t.column("instr_tokens").to_numpy())
    valid = ~outputs.errored(t) & np.isfinite(ppl)
    return E, ppl, valid


def pick(E: np.ndarray, ppl: np.ndarray, valid: np.ndarray, cfg: Any) -> tuple[dict[str, Any], np.ndarray]:
    """k-means over valid rows, then Cherry's band picks. Returns the picks (input positions) and
    every row's cluster (-1 for rows without a valid instruction perplexity)."""
    idx = np.flatnonzero(valid)
    _, assign = kmeans(E[idx], int(cfg.cherry.clusters), seed=int(cfg.seed))
    low, high = (float(x) for x in cfg.cherry.band)
    local = cherry_cluster_picks(ppl[idx], assign, int(cfg.cherry.per_cluster), low, high)
    per_row = np.full(len(valid), -1, dtype=np.int64)
    per_row[idx] = assign
    return ({"positions": idx[local].tolist(), "clusters": assign[local].tolist(),
             "n_clusters": int(assign.max() + 1), "cluster_sizes": np.bincount(assign).tolist()}, per_row)


def relative_to_run(path: Path, out: Path) -> str:
    """A path inside the run as relative to it (the run stays valid when moved); others absolute."""
    try:
        return str(path.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path.resolve())


def run(cfg: Any) -> Result:
    settings.validate(cfg)
    rc = settings.render_config(cfg)
    base = resolve_model(cfg.model.name)
    settings.check_chat_template(rc, base, bool(cfg.model.trust_remote_code))
    data_path = settings.data_path(cfg)
    rundir.check_inputs(Path(cfg.output_dir), WRITES, [data_path])  # before the input is even read
    src = inspect_input(data_path, cfg.data.format, cfg.data.limit, cfg.data.rows_per_shard)
    mine = cfg.cherry.pre_experienced and settings.resolve_data_path(cfg.cherry.pre_experienced)
    with rundir.claim(cfg.output_dir, "cherry", WRITES, [data_path, mine]) as run_dir:
        return execute(cfg, run_dir.path, data_path, src, base, rc)


def execute(cfg: Any, out: Path, data_path: Path, src: Any, base: Path, rc: Any) -> Result:
    """The pipeline's stages inside the claimed run directory ``out``."""
    from omegaconf import OmegaConf, open_dict

    st = out / STAGES
    st.mkdir(parents=True, exist_ok=True)
    rc_spec = settings.actor_spec(cfg, Path("."), rc)["render"]
    timings: dict[str, float] = {}
    parts = {"input_sha256": src.sha256, "model": outputs.model_identity(base, cfg.model.name),
             "cherry": OmegaConf.to_container(cfg.cherry), "train": OmegaConf.to_container(cfg.train),
             "render": rc_spec, "seed": int(cfg.seed)}
    if not cfg.resume or not (st / "run" / shards.RUN_FILE).exists():  # a fresh run: no stale stage output
        shutil.rmtree(st, ignore_errors=True)
        shutil.rmtree(out / shards.SHARDS_DIR, ignore_errors=True)
        st.mkdir(parents=True)
    shards.prepare(st, parts, bool(cfg.resume), "run")  # refuses to resume a different run
    staged = stage_input(data_path, st, cfg.data.format, settings.fields(cfg), bool(cfg.data.drop_duplicates),
                         cfg.data.limit, cfg.data.rows_per_shard, src)
    if cfg.cherry.pre_experienced:
        model = settings.resolve_data_path(cfg.cherry.pre_experienced)
        picks = {"positions": [], "note": "pre_experienced model given; no picks, no training"}
        tlog: dict[str, Any] = {}
    else:
        picks_file = st / "picks.json"
        if picks_file.exists():
            picks = json.loads(picks_file.read_text())
        else:
            with timed(timings, "embed"):
                E, ppl, valid = embed_instructions(staged, base, st, cfg, rc_spec)
            with timed(timings, "cluster_picks"):
                picks, per_row = pick(E, ppl, valid, cfg)
            outputs.save_npy(per_row, st / "clusters.npy")
            outputs.save_npy(ppl, st / "instruction_ppl.npy")
            outputs.write_json(picks, picks_file)
        model = st / "pre_experienced"
        with timed(timings, "train"):
            tlog = fine_tune(subset_rows(staged, picks["positions"], st / "picks.parquet"), base, model,
                             train_params(cfg), rc_spec, cfg)
    log.info("pre-experienced model: %s (%d picks)", model, len(picks["positions"]))
    icfg = copy.deepcopy(cfg)
    with open_dict(icfg):
        icfg.model.name = str(model)
    with timed(timings, "ifd"):
        result = ifd.run(icfg)
    m = json.loads((out / outputs.MANIFEST).read_text())
    m.update({"job": "cherry", "pre_experienced_model": relative_to_run(Path(model), out), "base_model": parts["model"],
              "stages": {"picks": len(picks["positions"]), "n_clusters": picks.get("n_clusters"),
                         "train_loss_first": (tlog.get("losses") or [None])[0],
                         "train_loss_last": (tlog.get("losses") or [None])[-1], "timings_s": timings}})
    outputs.write_json(m, out / outputs.MANIFEST)
    return Result(out, result.n_rows, result.n_selected, result.counts, {**timings, **result.timings})


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("cherry", run)


if __name__ == "__main__":
    main()
