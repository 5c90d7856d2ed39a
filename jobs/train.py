"""The fine-tuning stage on Ray Train: ``TorchTrainer`` workers (DDP on GPUs, gloo on CPU) run
``training.sft.train`` on their share of the rows; rank 0 saves an HF model directory that the
scoring and embedding actors load like any other model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from jobs.specs import train_render
from scoring.passes import RenderConfig, render_rows
from scoring.render import PassIds
from training.sft import TrainParams

log = logging.getLogger(__name__)

TRAIN_LOG = "train_log.json"


def train_params(cfg: Any, epochs: int | None = None) -> TrainParams:
    t = cfg.train
    return TrainParams(
        lr=float(t.lr),
        epochs=int(epochs if epochs is not None else t.epochs),
        batch_size=int(t.batch_size),
        micro_batch=int(t.micro_batch),
        warmup_ratio=float(t.warmup_ratio),
        weight_decay=float(t.weight_decay),
        max_grad_norm=float(t.max_grad_norm),
        seed=int(cfg.seed),
    )


def examples(rows: list[dict[str, Any]], rc: RenderConfig, tok: Any) -> list[PassIds]:
    """Training sequences: each row's conditioned pass with EOS, prompt masked. Over-long rows keep
    their response (up to the window) and lose prompt tokens from the left, as in scoring; a row that
    still cannot be rendered raises (the caller only passes valid rows, nothing is skipped silently)."""
    rendered = render_rows(rows, replace(rc, passes=("cond", "uncond"), score_eos=True, mode="clean"), tok)
    bad = [(r.get("position"), x.error) for r, x in zip(rows, rendered) if x.error]
    if bad:
        raise ValueError(f"{len(bad)} training rows cannot be rendered, e.g. {bad[:3]}")
    return [x.passes["cond"] for x in rendered]


def _loop(config: dict[str, Any]) -> None:
    """Ray Train worker: load, shard, train, (rank 0) save, report."""
    import ray.train
    import torch

    from scoring.models import load_model
    from scoring.passes import pad_token
    from training.sft import train

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(int(config["threads"]))
    device = "cuda" if torch.cuda.is_available() and config["use_gpu"] else "cpu"
    tok, model = load_model(Path(config["base"]), device="cpu", dtype="float32")  # fp32 master weights
    rows = pq.read_table(config["rows"]).to_pylist()
    exs = examples(rows, config["render"], tok)
    model = ray.train.torch.prepare_model(model) if device == "cuda" or world > 1 else model
    pad = pad_token(tok)
    losses = train(model, exs, pad, TrainParams(**config["params"]), rank, world)
    if rank == 0:
        out = Path(config["out"])
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        inner = model.module if hasattr(model, "module") else model
        inner.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / TRAIN_LOG).write_text(
            json.dumps(
                {
                    "losses": losses,
                    "examples": len(exs),
                    "world": world,
                    "params": config["params"],
                    "base": config["base"],
                }
            )
        )
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    ray.train.report({"final_loss": losses[-1] if losses else float("nan"), "steps": len(losses)})


def fine_tune(
    rows_path: Path, base: Path, out: Path, params: TrainParams, render: RenderConfig, cfg: Any
) -> dict[str, Any]:
    """Fine-tune ``base`` on the records in ``rows_path`` into the HF directory ``out`` (reused when
    it is already complete); returns its training log."""
    if (out / TRAIN_LOG).exists():
        log.info("reusing fine-tuned model %s", out)
        return json.loads((out / TRAIN_LOG).read_text())
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from jobs.pipeline import init_ray
    from jobs.settings import device

    init_ray(cfg.cluster, bool(cfg.get("verbose", False)))
    use_gpu = device(cfg) == "cuda"
    t = cfg.train
    workers = int(t.num_workers) if t.num_workers != "auto" else _auto_workers(use_gpu)
    config = {
        "base": str(base),
        "rows": str(rows_path),
        "out": str(out.resolve()),
        "render": train_render(render, int(t.max_length)),
        "params": asdict(params),
        "threads": int(t.threads_per_worker),
        "use_gpu": use_gpu,
    }
    trainer = TorchTrainer(
        _loop,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": float(t.threads_per_worker)} | ({"GPU": 1.0} if use_gpu else {}),
        ),
        run_config=RunConfig(storage_path=str((out.parent / "ray_train").resolve()), name=out.name),
    )
    log.info("fine-tuning %s on %s with %d worker(s) -> %s", base.name, rows_path.name, workers, out)
    trainer.fit()
    if not (out / TRAIN_LOG).exists():
        raise RuntimeError(f"training finished without writing {out}")
    return json.loads((out / TRAIN_LOG).read_text())


def _auto_workers(use_gpu: bool) -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("GPU", 0))) if use_gpu else 1
