"""Which guards and ranking make a curated subset cleaner than random? (issue 18's variant table)

    python -m bench.curate [--pool 800 --kb 2000 --dirty 0.2 --seed 0] [--reuse]

The corruption benchmark's pool (``bench.corruption``), with eight kinds of dirt in turn: the four
synthetic ones (swap = an answer to another question, numbers, facts, truncate = unfinished) and four
that real synthetic sets carry (placeholder answers, "As an AI…" refusals, references to images/URLs
the model cannot see, one duplicated boilerplate answer). One ``jobs.kb_build`` + ``jobs.recost`` run
with SmolLM2 scores every row (cond, uncond and knowledge passes); every variant below is then a pure
function of those scores (``selection.curate``), so all variants rank the same numbers:

- guard sets (none, each guard alone, the no-KB combination, the combination with the KB check);
- rankings (IFD, RPE, RECOST's fused rank, longest, random);
- diversity (cluster-proportional sampling over the budget) on or off.

For each: the share of dirty rows among the picks at each budget (random = the pool's rate), per kind,
and how many *clean* rows the guards removed (their cost). Also each signal's AUROC for "dirty" per
kind. Writes ``bench/results/curate_variants.json``; skips (exit 0) when the data is absent.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.corruption import REAL_KINDS, auroc, pool_args, score_pool, scoring_args, start

GUARD_SETS: dict[str, dict[str, Any]] = {
    "none": {},
    "ifd<1": {"max_ifd": 1.0},
    "short<3": {"min_response_tokens": 3},
    "cond_tail_10%": {"cond_tail": 0.1},
    "generic_10%": {"generic_tail": 0.1},
    "knowledge(rpe>=0)": {"min_rpe": 0.0},
    "no_kb: ifd+short+cond_tail+generic": {"max_ifd": 1.0, "min_response_tokens": 3, "cond_tail": 0.1,
                                          "generic_tail": 0.1},
    "kb: ifd+short+cond_tail+generic+knowledge": {"max_ifd": 1.0, "min_response_tokens": 3, "cond_tail": 0.1,
                                                 "generic_tail": 0.1, "min_rpe": 0.0},
    # the defaults chosen from the rows above (generic_10% dropped: most of what it removes is clean)
    "default, no KB: ifd+short+cond_tail": {"max_ifd": 1.0, "min_response_tokens": 3, "cond_tail": 0.1},
    "default, KB: ifd+short+cond_tail+knowledge": {"max_ifd": 1.0, "min_response_tokens": 3, "cond_tail": 0.1,
                                                  "min_rpe": 0.0},
    # the cost target (at most one scoring pass beyond the ranking's own): guards that need no uncond pass
    "cond pass only: short+cond_tail": {"min_response_tokens": 3, "cond_tail": 0.1},
    "KB, no uncond: short+cond_tail+knowledge": {"min_response_tokens": 3, "cond_tail": 0.1, "min_rpe": 0.0},
}


def rankings(scores: Any, fused_rank: np.ndarray, seed: int) -> dict[str, tuple[np.ndarray, bool]]:
    n = len(scores)
    return {
        "ifd": (scores["ifd_loss"].to_numpy(), True),
        "rpe": (scores["rpe_diff"].to_numpy(), True),
        "recost_fused": (np.where(fused_rank >= 0, fused_rank, np.nan).astype(np.float64), False),
        "longest": (scores["response_tokens"].to_numpy().astype(np.float64), True),
        "random": (np.random.default_rng(seed + 7).random(n), True),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pool_args(ap, 800, 2000, "bench_curate")
    ap.set_defaults(dirty=0.2)
    scoring_args(ap, "0.05,0.1", "curate_variants.json")
    args = ap.parse_args()
    work = start(args)
    if work is None:
        return
    from jobs import recost
    from selection.budget import resolve_budget
    from selection.curate import DiversityParams, GuardParams, curate_select, guard_reasons
    from selection.recost import recost_select

    scores, emb, kinds, cfg, setup = score_pool(args, work, REAL_KINDS)
    n = len(kinds)
    dirty = np.array([k is not None for k in kinds])
    err = scores["error"].notna().to_numpy()
    cond, uncond = scores["cond_loss"].to_numpy(), scores["uncond_loss"].to_numpy()
    ifd, rpe = scores["ifd_loss"].to_numpy(), scores["rpe_diff"].to_numpy()
    length = scores["response_tokens"].to_numpy()
    fused = recost_select(ifd, rpe, err, emb, n, recost.params(cfg)).fused_rank
    out: dict[str, Any] = {"setup": {**setup, "kinds": list(REAL_KINDS), "base_rate": float(dirty[~err].mean())},
                           "guards": {}, "variants": {}, "auroc_dirty": {}}
    for gname, g in GUARD_SETS.items():
        reasons = guard_reasons(length, cond, uncond, ifd, err, GuardParams(**g), rpe)
        removed = (reasons != "") & ~err
        out["guards"][gname] = {
            "removed": int(removed.sum()), "removed_dirty": int((removed & dirty).sum()),
            "removed_clean": int((removed & ~dirty).sum()),
            "dirty_left_by_kind": {k: int(sum(kinds[i] == k for i in np.flatnonzero((reasons == "") & ~err)))
                                   for k in REAL_KINDS},
        }
        for rname, (score, higher) in rankings(scores, fused, args.seed).items():
            for div in (False, True):
                row: dict[str, Any] = {}
                for b in args.budgets.split(","):
                    k = resolve_budget(float(b), n)
                    res = curate_select(score, higher, reasons, emb, k, DiversityParams(enabled=div, seed=args.seed))
                    o = res.order
                    row[b] = {"selected": int(len(o)), "dirty_share": float(dirty[o].mean()) if len(o) else None,
                              "by_kind": {kk: int(sum(kinds[i] == kk for i in o)) for kk in REAL_KINDS}}
                out["variants"][f"{gname} | {rname} | diversity={'on' if div else 'off'}"] = row
    signals = {"cond_loss (high)": cond, "uncond_loss (low)": -uncond, "response_tokens (short)": -length.astype(float),
               "ifd_loss (high)": ifd, "rpe_diff (low)": -rpe}
    for name, s in signals.items():
        out["auroc_dirty"][name] = {"all": auroc(s, dirty)}
        for kind in REAL_KINDS:
            mask = np.array([k in (None, kind) for k in kinds])
            out["auroc_dirty"][name][kind] = auroc(s[mask], dirty[mask])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    write_signals(Path(args.out).with_suffix(".rows.csv"), kinds, err, length, cond, uncond, rpe, fused)
    print(table(out, args.budgets.split(",")))


def write_signals(path: Path, kinds: list[str | None], err: np.ndarray, length: np.ndarray, cond: np.ndarray,
                  uncond: np.ndarray, rpe: np.ndarray, fused: np.ndarray) -> None:
    """Every pool row's dirt label and signals (a small CSV beside the JSON): new guard or ranking
    variants can then be evaluated without rescoring the pool."""
    lines = ["kind,error,response_tokens,cond_loss,uncond_loss,rpe_diff,recost_fused_rank"]
    for i, k in enumerate(kinds):
        lines.append(f"{k or ''},{int(err[i])},{int(length[i])},{cond[i]:.9g},{uncond[i]:.9g},{rpe[i]:.9g},{int(fused[i])}")
    path.write_text("\n".join(lines) + "\n")


def table(out: dict[str, Any], budgets: list[str]) -> str:
    """The variant table as Markdown (dirty share per budget), best first at the first budget."""
    rows = sorted(out["variants"].items(), key=lambda kv: (kv[1][budgets[0]]["dirty_share"] or 1.0))
    head = "| guards | ranking | diversity | " + " | ".join(f"dirty @ {b}" for b in budgets) + " |"
    lines = [head, "|" + "---|" * (3 + len(budgets))]
    for name, row in rows:
        g, r, d = name.split(" | ")
        cells = " | ".join(f"{100 * row[b]['dirty_share']:.1f}%" if row[b]["dirty_share"] is not None else "—"
                           for b in budgets)
        lines.append(f"| {g} | {r} | {d.split('=')[1]} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
