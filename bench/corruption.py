"""Quality benchmark: does RECOST avoid dirty responses that IFD and random selection pick?

    python -m bench.corruption [--pool 400 --kb 2000 --dirty 0.1 --budget 0.1 --seed 0]

1. Alpaca 52k (../shared/data) is shuffled with the seed and split into a trusted KB part and a
   disjoint pool part (pool rows whose instruction+input also occurs in the KB are skipped).
2. About ``--dirty`` of the pool gets a dirty response, four kinds in turn: ``swap`` (the response
   of an unrelated pool row), ``numbers`` (every number changed), ``facts`` (capitalised names
   replaced by names from other rows), ``truncate`` (the response cut to its first third).
3. ``jobs.kb_build`` and ``jobs.recost`` run on it with the real SmolLM2-135M model (one scoring run
   gives the cond, uncond and know passes, so IFD is computed from the same scores).
4. At each budget: the fraction of selected rows that are dirty for random selection (expected
   value), IFD top-k (Cherry: IFD > 1 dropped), RECOST as configured, and two ablations
   (RPE rank only, IFD rank only, both with the diversity stage). Also: how well each score
   separates dirty from clean rows (AUROC, 0.5 = chance), overall and per corruption kind.

Writes ``bench/results/corruption.json`` and prints a table. Skips (exit 0) when the data is absent.
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared" / "data" / "alpaca_data.json.gz"
KINDS = ("swap", "numbers", "facts", "truncate")
# the dirt real synthetic instruction sets carry (issue 18), beside the four above
REAL_KINDS = KINDS + ("placeholder", "refusal", "unseen_media", "boilerplate")
PLACEHOLDERS = ("N/A", "TODO", "...", "<nooutput>", "Answer: ", "[insert answer here]", "None.", "-")
REFUSALS = (
    "As an AI language model, I cannot {verb} that.",
    "I'm sorry, but as an AI I am not able to {verb} this request.",
    "As an AI, I do not have personal opinions, so I cannot {verb} this.",
    "I apologize, but I am unable to {verb} that as it goes beyond my capabilities as an AI assistant.",
)
MEDIA = (
    "Please refer to the image below for the answer.\n![diagram](https://i.imgur.com/{slug}.png)",
    "The answer is shown in the attached chart.",
    "See the video at https://www.youtube.com/watch?v={slug} for a full explanation.",
    "As you can see in the picture above, {start}",
    "Here is the completed table: https://docs.google.com/spreadsheets/d/{slug}",
)
BOILERPLATE = ("Thank you for your question! This is a great question and there are many factors to consider. "
               "It depends on the situation. I hope this helps! Let me know if you have any other questions.")
WEIGHTS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
_NUM = re.compile(r"\d+(?:\.\d+)?")
_NAME = re.compile(r"(?<=[a-z,;:] )[A-Z][a-z]{2,}")


def alter_numbers(text: str, rng: random.Random) -> str | None:
    if not _NUM.search(text):
        return None

    def change(m: re.Match) -> str:
        s = m.group(0)
        v = float(s)
        new = v * rng.choice([2, 3, 0.5, 10]) + rng.choice([1, 3, 7])
        return str(int(new)) if "." not in s else f"{new:.{len(s.split('.')[1])}f}"
    return _NUM.sub(change, text)


def alter_facts(text: str, names: list[str], rng: random.Random) -> str | None:
    found = sorted(set(_NAME.findall(text)))[:2]  # at most two names: a subtle factual error
    if not found:
        return None
    swap = {n: rng.choice([m for m in names if m != n]) for n in found}
    return _NAME.sub(lambda m: swap.get(m.group(0), m.group(0)), text)


def truncate(text: str) -> str | None:
    words = text.split()
    return " ".join(words[: max(1, len(words) // 3)]) if len(words) >= 12 else None


def dirt(kind: str, text: str, instruction: str, rng: random.Random) -> str | None:
    """A response of one of the real-dirt kinds for a row (None: the kind does not apply)."""
    slug = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))
    if kind == "placeholder":
        return rng.choice(PLACEHOLDERS)
    if kind == "refusal":
        verb = instruction.split()[0].lower() if instruction.split() else "do"
        return rng.choice(REFUSALS).format(verb=verb)
    if kind == "unseen_media":
        start = " ".join(text.split()[:12])
        return rng.choice(MEDIA).format(slug=slug, start=start)
    if kind == "boilerplate":
        return BOILERPLATE
    raise ValueError(kind)


def corrupt(pool: list[dict[str, str]], frac: float, seed: int, kinds_used: tuple[str, ...] = KINDS
            ) -> list[str | None]:
    """Corrupt ``frac`` of ``pool`` in place, the kinds in turn; returns the corruption kind per row
    (None = clean). The default kinds are the original four (so earlier figures reproduce)."""
    rng = random.Random(seed)
    names = sorted({n for r in pool for n in _NAME.findall(r["output"])})
    n_dirty = int(round(frac * len(pool)))
    order = list(range(len(pool)))
    rng.shuffle(order)
    kinds: list[str | None] = [None] * len(pool)
    want = [kinds_used[i % len(kinds_used)] for i in range(n_dirty)]
    candidates = iter(order)
    originals = [r["output"] for r in pool]
    for kind in want:
        for i in candidates:
            if kind == "swap":
                j = rng.choice([j for j in range(len(pool)) if j != i])
                new = originals[j]
            elif kind == "numbers":
                new = alter_numbers(originals[i], rng)
            elif kind == "facts":
                new = alter_facts(originals[i], names, rng)
            elif kind == "truncate":
                new = truncate(originals[i])
            else:
                new = dirt(kind, originals[i], pool[i]["instruction"], rng)
            if new is not None and new != originals[i]:
                pool[i]["output"], kinds[i] = new, kind
                break
    return kinds


def split(n_pool: int, n_kb: int, seed: int) -> tuple[list[dict], list[dict]]:
    with gzip.open(ALPACA, "rt") as f:
        data = json.load(f)
    rng = random.Random(seed)
    rng.shuffle(data)
    kb = data[:n_kb]
    seen = {(r["instruction"], r["input"]) for r in kb}
    pool = [dict(r) for r in data[n_kb:] if (r["instruction"], r["input"]) not in seen and r["output"].strip()]
    return kb, pool[:n_pool]


def auroc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """P(score of a random positive row > score of a random negative row), ties count half."""
    ok = np.isfinite(score)
    pos, neg = score[ok & positive], score[ok & ~positive]
    if not len(pos) or not len(neg):
        return None
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def evaluate(scores: Any, emb: np.ndarray, dirty_kind: list[str | None], budgets: list[float], seed: int,
             base: Any) -> dict[str, Any]:
    from dataclasses import replace

    from selection.budget import resolve_budget
    from selection.recost import recost_select
    from selection.topk import select_top

    n = len(dirty_kind)
    dirty = np.array([k is not None for k in dirty_kind])
    err = scores["error"].notna().to_numpy()
    ifd = scores["ifd_loss"].to_numpy()
    rpe = scores["rpe_diff"].to_numpy()
    out: dict[str, Any] = {"budgets": {}}
    for b in budgets:
        k = resolve_budget(b, n)
        methods = {
            "ifd_topk": select_top(ifd, err, k, 1.0).order,
            "recost": recost_select(ifd, rpe, err, emb, k, base).order,   # as configured (defaults)
        }
        for w in WEIGHTS:  # weight of the IFD rank: 0 = RPE rank only, 1 = IFD rank only (+ diversity)
            methods[f"recost_weight_{w}"] = recost_select(ifd, rpe, err, emb, k, replace(base, weight=w)).order
        methods["recost_ratio_form"] = recost_select(ifd, scores["rpe_ratio"].to_numpy(), err, emb, k,
                                                     replace(base, rpe="ratio")).order
        row: dict[str, Any] = {"k": k, "random_expected": float(dirty.mean())}
        for name, order in methods.items():
            row[name] = {"dirty_fraction": float(dirty[order].mean()) if len(order) else None,
                         "selected": int(len(order)),
                         "by_kind": {kind: int(sum(dirty_kind[i] == kind for i in order)) for kind in KINDS}}
        out["budgets"][str(b)] = row
    out["auroc_dirty"] = {}
    for name, s in (("ifd_loss (high = picked by IFD)", ifd), ("rpe_diff (high = picked by RPE)", rpe),
                    ("cond_loss", scores["cond_loss"].to_numpy())):
        out["auroc_dirty"][name] = {"all": auroc(s, dirty)}
        for kind in KINDS:
            mask = np.array([k in (None, kind) for k in dirty_kind])
            out["auroc_dirty"][name][kind] = auroc(s[mask], dirty[mask])
    return out


def pool_args(ap: argparse.ArgumentParser, pool: int, kb: int, work: str) -> None:
    """The corrupted pool's options, shared by the benchmarks built on it."""
    ap.add_argument("--pool", type=int, default=pool)
    ap.add_argument("--kb", type=int, default=kb)
    ap.add_argument("--dirty", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--work", default=str(ROOT / "out" / work))


def scoring_args(ap: argparse.ArgumentParser, budgets: str, out: str) -> None:
    """The options of a bench that scores the pool once (``score_pool``) and evaluates the scores."""
    ap.add_argument("--budgets", default=budgets)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / out))
    ap.add_argument("--reuse", action="store_true", help="evaluate the scores already in --work (no rescoring)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for jobs.recost (e.g. kb.k=3)")


def start(args: argparse.Namespace) -> Path | None:
    """The work directory (created), with logging on; None (and a note) when the data is absent."""
    if not ALPACA.exists():
        print(f"skipped: {ALPACA} not found")
        return None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    return work


def score_pool(args: argparse.Namespace, work: Path, kinds_used: tuple[str, ...] = KINDS
               ) -> tuple[Any, np.ndarray, list[str | None], Any, dict[str, Any]]:
    """Build the corrupted pool and its KB in ``work``, run ``jobs.kb_build`` + ``jobs.recost`` (or,
    with ``args.reuse``, read the scores already there): (scores DataFrame, query embeddings, dirty
    kind per row, the recost config, the setup record)."""
    from jobs import kb_build, recost
    from jobs.settings import compose
    from records.shards import load_embeddings

    cfg = compose("recost", [f"data.path={work / 'pool.jsonl'}", f"kb.index={work / 'kb'}", f"model.name={args.model}",
                             f"output_dir={work / 'out'}", "selection.budget=0.1", *args.overrides])
    if args.reuse:
        kinds = json.loads((work / "labels.json").read_text())
        prev = json.loads(Path(args.out).read_text())["setup"]
        kb, pool, t_kb, t_run, m = [None] * prev["kb"], kinds, prev["kb_build_s"], prev["recost_s"], {"rows": prev["kb_rows"]}
        timings = prev["recost_timings_s"]
    else:
        kb, pool = split(args.pool, args.kb, args.seed)
        kinds = corrupt(pool, args.dirty, args.seed, kinds_used)
        (work / "kb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kb))
        (work / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
        (work / "labels.json").write_text(json.dumps(kinds))
        t0 = time.time()
        m = kb_build.run(compose("kb_build", [f"kb.path={work / 'kb.jsonl'}", f"kb.output={work / 'kb'}",
                                              f"model.name={args.model}"]))
        t_kb = time.time() - t0
        t0 = time.time()
        timings = recost.run(cfg).timings
        t_run = time.time() - t0
    import pandas as pd

    scores = pd.read_parquet(work / "out" / "scores.parquet")
    n_shards = len(list((work / "out" / "records").glob("part-*.parquet")))
    emb = load_embeddings(work / "out" / "embeddings", n_shards).astype(np.float32)
    setup = {"pool": len(pool), "kb": len(kb), "dirty": int(sum(k is not None for k in kinds)),
             "dirty_by_kind": {k: kinds.count(k) for k in kinds_used}, "seed": args.seed, "model": args.model,
             "overrides": args.overrides, "kb_build_s": round(t_kb, 1), "recost_s": round(t_run, 1),
             "recost_timings_s": timings, "kb_rows": m["rows"]}
    return scores, emb, kinds, cfg, setup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pool_args(ap, 400, 2000, "bench_corruption")
    scoring_args(ap, "0.05,0.1,0.2", "corruption.json")
    args = ap.parse_args()
    work = start(args)
    if work is None:
        return
    from jobs import recost

    scores, emb, kinds, cfg, setup = score_pool(args, work)
    result = {
        "setup": setup,
        **evaluate(scores, emb, kinds, [float(b) for b in args.budgets.split(",")], args.seed, recost.params(cfg)),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
