"""What ``data.path`` names: one file, a directory of data files (sorted, read as one dataset), or a
Hugging Face ``datasets`` directory written by ``save_to_disk`` (a ``Dataset``, or a ``DatasetDict``
whose ``train`` split is read; point at ``<dir>/<split>`` for another)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from records.readers import detect_format

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".arrow")
DEFAULT_SPLIT = "train"


@dataclass(frozen=True)
class Part:
    path: Path
    format: str


def _data_file(p: Path) -> bool:
    name = p.name.lower().removesuffix(".gz")
    return p.is_file() and not p.name.startswith(".") and name.endswith(DATA_SUFFIXES)


def hf_split(path: Path) -> Path:
    """A ``DatasetDict`` directory's ``train`` split (or its only split)."""
    splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
    if DEFAULT_SPLIT in splits:
        return path / DEFAULT_SPLIT
    if len(splits) == 1:
        return path / splits[0]
    raise ValueError(
        f"{path} is a Hugging Face DatasetDict with splits {splits} and no {DEFAULT_SPLIT!r}; "
        f"set data.path to {path}/<split>"
    )


def parts(path: Path, fmt: str = "auto") -> list[Part]:
    """The files ``path`` stands for, in reading order, each with its format."""
    if not path.is_dir():
        return [Part(path, detect_format(path) if fmt == "auto" else fmt)]
    if (path / "dataset_dict.json").is_file():
        path = hf_split(path)
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        state = json.loads((path / "state.json").read_text())
        files = [path / f["filename"] for f in state.get("_data_files", [])]
        missing = [f.name for f in files if not f.is_file()]
        if missing or not files:
            raise ValueError(f"{path} is a damaged Hugging Face dataset directory (missing {missing or 'data files'})")
        return [Part(f, "arrow") for f in files]
    files = sorted((p for p in path.rglob("*") if _data_file(p)), key=lambda p: p.relative_to(path).as_posix())
    others = sorted(
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and not _data_file(p) and not p.name.startswith(".")
    )
    if others:
        log.warning("%s: %d files that are not data files are skipped, e.g. %s", path, len(others), others[0])
    if not files:
        raise ValueError(f"no data files ({', '.join(DATA_SUFFIXES)}, optionally .gz) in directory {path}")
    return [Part(f, detect_format(f) if fmt == "auto" else fmt) for f in files]


def describe(path: Path, ps: list[Part]) -> str:
    """The input's format as the manifest records it: ``jsonl``, or ``directory(jsonl,parquet)``."""
    if not path.is_dir():
        return ps[0].format
    kinds = ",".join(sorted({p.format for p in ps}))
    return f"hf_dataset({kinds})" if all(p.format == "arrow" for p in ps) else f"directory({kinds})"
