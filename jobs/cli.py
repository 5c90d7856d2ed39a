"""Shared Hydra entry point: compose ``conf/<name>.yaml``, run, turn user errors into one line."""

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
