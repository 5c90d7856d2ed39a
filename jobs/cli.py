"""The ``winnow`` command and the shared Hydra entry point every job uses: compose ``conf/<name>.yaml``,
run, turn user errors into one line.

    winnow ifd data.path=pool.jsonl selection.budget=0.05 output_dir=out/ifd
    winnow --help                      # the jobs, one line each
    winnow ifd --help                  # Hydra's help for one job: its config groups and overrides

``python -m jobs.<module>`` runs the same jobs with the same overrides.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

log = logging.getLogger("winnow")

# Errors a user fixes by changing the command line or the input: one clear line, exit code 2.
USER_ERRORS = (
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
    KeyError,
)


def message(e: BaseException) -> str:
    """The human-readable text of an error (``str(OSError)`` names the file; a ``KeyError``'s first
    argument is its message)."""
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e) or type(e).__name__


# command name -> (module, one line); the order is the order ``winnow --help`` lists them in
JOBS: dict[str, tuple[str, str]] = {
    "curate": ("jobs.curate", "the recommended pipeline: near-duplicates out, quality guards, ranking, diversity"),
    "ifd": ("jobs.ifd", "IFD / Superfiltering / Cherry-mode scoring and top-budget selection"),
    "cherry": ("jobs.cherry", "Cherry LLM with the pre-experienced model (embed, cluster, brief fine-tune, rescore)"),
    "diverse-evol": ("jobs.diverse_evol", "DiverseEvol: train, re-embed, k-center greedy, repeat"),
    "kb-build": ("jobs.kb_build", "build RECOST's knowledge base: embed trusted rows, faiss index"),
    "recost": ("jobs.recost", "RECOST: knowledge-conditioned scoring, rank fusion, diversity-consistent sampling"),
    "rds": ("jobs.rds", "RDS+: rows whose embeddings are closest to a target set"),
    "baseline": ("jobs.baseline", "random / longest / other baselines at the same budget"),
    "dedup": ("jobs.dedup", "exact + semantic near-duplicate removal (SemDeDup)"),
    "select": ("jobs.select", "re-select from a finished run's scores.parquet without rescoring"),
    "compare": ("jobs.compare", "fine-tune on each selection and on random draws; held-out NLL with intervals"),
}


def usage() -> str:
    width = max(map(len, JOBS))
    lines = [
        "usage: winnow <job> [key=value ...]   (Hydra overrides, as for python -m jobs.<module>)",
        "       winnow <job> --help            (that job's config groups and options)",
        "",
        "jobs:",
        *(f"  {name:<{width}}  {line}" for name, (_, line) in JOBS.items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """The ``winnow`` console entry point: ``winnow <job> [overrides]`` runs ``jobs.<module>``'s main."""
    import importlib

    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    name = args[0].replace("_", "-")
    if name not in JOBS:
        print(f"winnow: error: unknown job {args[0]!r}; choose one of {', '.join(JOBS)}", file=sys.stderr)
        print(usage(), file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(JOBS[name][0])
    sys.argv = [f"winnow {name}", *args[1:]]  # Hydra parses sys.argv
    module.main()


def hydra_entry(config_name: str, run: Callable[[Any], Any]) -> None:
    import hydra

    from jobs.settings import ROOT

    @hydra.main(config_path=str(ROOT / "conf"), config_name=config_name, version_base="1.3")
    def _main(cfg: Any) -> None:
        for noisy in ("transformers", "ray.data", "filelock", "faiss.loader"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        try:
            run(cfg)
        except USER_ERRORS as e:
            print(f"winnow: error: {message(e)}", file=sys.stderr)
            log.debug("details", exc_info=True)
            sys.exit(2)

    _main()
