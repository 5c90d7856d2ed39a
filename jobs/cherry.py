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

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from jobs import dedup, ifd, settings, skeleton, specs
from jobs.embed import embed_staged
from jobs.method import Method
from jobs.skeleton import PoolRun, Result, timed
from jobs.train import fine_tune, train_params
from records import shards, tables, writers
from records.layout import EMBEDDINGS_DIR, MANIFEST_FILE, SHARDS_DIR
from records.shards import RUN_FILE
from records.staging import Staged, subset_rows
from scoring.models import content_key, model_identity
from scoring.passes import RenderConfig
from selection.kmeans import cherry_cluster_picks, kmeans
from selection.scores import perplexity

log = logging.getLogger(__name__)

STAGES = "stages"
WRITES = (*ifd.WRITES, STAGES)
NO_PICKS = "pre_experienced model given; no picks, no training"


def embed_instructions(
    staged: Staged, base: Path, out: Path, cfg: Any, rc: RenderConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings [n, d], instruction perplexity [n], valid mask [n]) for every staged row."""
    spec = specs.embed_spec(cfg, base, rc, "instruction", cfg.cherry.pooling)
    t, E = embed_staged(staged, spec, specs.hf_resources(cfg), out / "embed", out / EMBEDDINGS_DIR, cfg)
    ppl = perplexity(
        t.column("instr_nll_sum").to_numpy(zero_copy_only=False), t.column("instr_tokens").to_numpy()
    )
    valid = ~tables.errored(t) & np.isfinite(ppl)
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
    return (
        {
            "positions": idx[local].tolist(),
            "clusters": assign[local].tolist(),
            "n_clusters": int(assign.max() + 1),
            "cluster_sizes": np.bincount(assign).tolist(),
        },
        per_row,
    )


def relative_to_run(path: Path, out: Path) -> str:
    """A path inside the run as relative to it (the run stays valid when moved); others absolute."""
    try:
        return str(path.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path.resolve())


def validate(cfg: Any) -> None:
    ifd.validate(cfg)
    train_params(cfg)
    if dedup.params(cfg) is not None and cfg.cherry.pre_experienced:
        raise ValueError(
            "dedup=semantic uses the pre-experience stage's instruction embeddings, which "
            "cherry.pre_experienced skips; run jobs.dedup first and give its deduped.jsonl as data.path"
        )


def near_copies(cfg: Any, staged: Staged, st: Path) -> dict[str, np.ndarray]:
    """With ``dedup=semantic``: the dedup columns over the stage's instruction embeddings (rows whose
    instruction could not be embedded take no part); none otherwise."""
    p = dedup.params(cfg)
    if p is None:
        return {}
    E = shards.load_embeddings(st / EMBEDDINGS_DIR, len(staged.shards)).astype(np.float32)
    return dedup.columns(dedup.apply(E, np.zeros(len(E), dtype=bool), p))


def run(cfg: Any) -> Result:
    """Cherry's whole pipeline: pre-experience stages under ``stages/``, then IFD with that model."""
    mine = cfg.cherry.pre_experienced and settings.resolve_data_path(cfg.cherry.pre_experienced)
    with skeleton.pool_run(cfg, "cherry", WRITES, validate, inputs=[mine or None]) as run:
        st, parts = run.out / STAGES, stage_key(run, run.model_path)
        if not cfg.resume or not (st / "run" / RUN_FILE).exists():  # a fresh run: no stale stage output
            shutil.rmtree(st, ignore_errors=True)
            shutil.rmtree(run.out / SHARDS_DIR, ignore_errors=True)
        st.mkdir(parents=True, exist_ok=True)
        shards.prepare(st, parts, bool(cfg.resume), "run")  # refuses to resume a different run
        staged = run.stage(st)
        if mine:
            model, picks, tlog = mine, {"positions": [], "note": NO_PICKS}, {}
        else:
            model, picks, tlog = pre_experience(run, staged, st)
        log.info("pre-experienced model: %s (%d picks)", model, len(picks["positions"]))
        result = ifd.score_and_select(run.with_model(settings.with_model(cfg, model), Path(model)),
                                      near_copies(cfg, staged, st))
        m = json.loads((run.out / MANIFEST_FILE).read_text())
        m.update(
            job="cherry",
            pre_experienced_model=relative_to_run(Path(model), run.out),
            base_model=model_identity(run.model_path, cfg.model.name),
            stages=stages_record(picks, tlog, run.timings),
        )
        writers.write_json(m, run.out / MANIFEST_FILE)
        return result


def stages_record(picks: dict[str, Any], tlog: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    """The manifest's account of the pre-experience stages."""
    losses = tlog.get("losses") or [None]
    return {
        "picks": len(picks["positions"]),
        "n_clusters": picks.get("n_clusters"),
        "train_loss_first": losses[0],
        "train_loss_last": losses[-1],
        "timings_s": timings,
    }


def stage_key(run: PoolRun, base: Path) -> dict[str, Any]:
    """What the pre-experience stages depend on."""
    cfg = run.cfg
    return {
        "input_sha256": run.src.sha256,
        "model": content_key(model_identity(base, cfg.model.name)),
        "cherry": skeleton.as_dict(cfg.cherry),
        "train": skeleton.as_dict(cfg.train),
        "render": asdict(run.rc),
        "seed": int(cfg.seed),
    }


def pre_experience(run: PoolRun, staged: Staged, st: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Embed → k-means → band picks (kept in ``picks.json``) → fine-tune the base model on them.
    Returns (model directory, picks, training log)."""
    cfg, t = run.cfg, run.timings
    picks_file = st / "picks.json"
    if picks_file.exists():
        picks = json.loads(picks_file.read_text())
    else:
        with timed(t, "embed"):
            E, ppl, valid = embed_instructions(staged, run.model_path, st, cfg, run.rc)
        with timed(t, "cluster_picks"):
            picks, per_row = pick(E, ppl, valid, cfg)
        writers.save_npy(per_row, st / "clusters.npy")
        writers.save_npy(ppl, st / "instruction_ppl.npy")
        writers.write_json(picks, picks_file)
    model = st / "pre_experienced"
    with timed(t, "train"):
        tlog = fine_tune(
            subset_rows(staged, picks["positions"], st / "picks.parquet"),
            run.model_path,
            model,
            train_params(cfg),
            run.rc,
            cfg,
        )
    return model, picks, tlog


METHOD = Method("cherry", ("cond", "uncond"), WRITES, ifd.reselect, ifd.RESELECT_WRITES, rank=ifd.rank)


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("cherry", run)


if __name__ == "__main__":
    main()
