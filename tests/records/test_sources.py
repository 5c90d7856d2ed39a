"""Inputs beyond one file: a directory of data files, Hugging Face ``save_to_disk`` directories; and the
outputs' loadability with ``datasets.load_dataset``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import card
from records import schema, writers
from records.staging import inspect_input, stage_input

ROWS = [{"instruction": f"Do task {i}.", "input": "" if i % 3 else f"ctx {i}", "output": f"Answer {i}."}
        for i in range(40)]


def staged_rows(src: Path, out: Path) -> list[dict]:
    staged = stage_input(src, out, rows_per_shard=7)
    t = pa.concat_tables([pq.read_table(s) for s in staged.shards])
    assert t.column(schema.POSITION).to_pylist() == list(range(t.num_rows))
    return t.to_pylist()


def as_records(rows: list[dict]) -> list[tuple]:
    return [(r["instruction"], r["input"], r["output"]) for r in rows]


def test_directory_of_files_is_one_dataset_in_name_order(tmp_path: Path, caplog) -> None:
    d = tmp_path / "pool"
    (d / "sub").mkdir(parents=True)
    with open(d / "a.jsonl", "w") as f:  # rows 0-9
        f.writelines(json.dumps(r) + "\n" for r in ROWS[:10])
    pq.write_table(pa.Table.from_pylist(ROWS[10:25]), d / "b.parquet")  # rows 10-24
    with gzip.open(d / "sub" / "c.json.gz", "wt") as f:  # rows 25-39, a JSON array, gzipped
        json.dump(ROWS[25:], f)
    (d / "notes.txt").write_text("not data")
    info = inspect_input(d)
    assert info.n_rows == 40 and info.format == "directory(json,jsonl,parquet)"
    with caplog.at_level("WARNING"):
        rows = staged_rows(d, tmp_path / "out")
    assert "notes.txt" in caplog.text  # skipped, and said so
    assert as_records(rows) == as_records(ROWS) and all(r["error"] is None for r in rows)
    (d / "a.jsonl").write_text(json.dumps(ROWS[1]) + "\n")  # any part changes the digest
    assert inspect_input(d).sha256 != info.sha256


def test_empty_directory_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="no data files"):
        inspect_input(tmp_path)


def test_hf_save_to_disk_dataset_and_dataset_dict(tmp_path: Path) -> None:
    import datasets

    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "ds"), num_shards=3)
    assert inspect_input(tmp_path / "ds").format == "hf_dataset(arrow)"
    assert as_records(staged_rows(tmp_path / "ds", tmp_path / "o1")) == as_records(ROWS)
    dd = datasets.DatasetDict({"train": ds.select(range(30)), "test": ds.select(range(30, 40))})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert as_records(staged_rows(tmp_path / "dd", tmp_path / "o2")) == as_records(ROWS[:30])  # train split
    assert as_records(staged_rows(tmp_path / "dd" / "test", tmp_path / "o3")) == as_records(ROWS[30:])
    datasets.DatasetDict({"a": ds, "b": ds}).save_to_disk(str(tmp_path / "ab"))
    with pytest.raises(ValueError, match="no 'train'"):
        inspect_input(tmp_path / "ab")


def test_selected_outputs_load_with_datasets(tmp_path: Path) -> None:
    import datasets

    src = tmp_path / "pool.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "run"
    staged = stage_input(src, out, rows_per_shard=8)
    scores = pa.table({schema.ID: pa.concat_tables([pq.read_table(s) for s in staged.shards]).column(schema.ID),
                       schema.POSITION: np.arange(40), schema.ERROR: pa.nulls(40, pa.string()),
                       "ifd_loss": np.linspace(0, 1, 40)})
    picks = np.array([35, 3, 17])
    writers.write_selected(staged.shards, picks, out / "selected.jsonl", scores, out / "selected.parquet")
    manifest = {"job": "ifd", "config": {"method": {"variant": "superfilter"}, "selection": {"budget": 3},
                                         "model": {"name": "tiny"}},
                "input": {"path": str(src), "sha256": staged.sha256, "rows": 40}, "selection": {"outcomes": {}}}
    card.write_card(out, manifest)
    j = datasets.load_dataset("json", data_files=str(out / "selected.jsonl"), split="train")
    p = datasets.load_dataset("parquet", data_files=str(out / "selected.parquet"), split="train")
    whole = datasets.load_dataset(str(out))["train"]  # the card points at selected.parquet
    want = [ROWS[i]["output"] for i in sorted(picks)]
    assert j["output"] == p["output"] == whole["output"] == want
    assert p["ifd_loss"] == pytest.approx([np.linspace(0, 1, 40)[i] for i in sorted(picks)])
    text = (out / "README.md").read_text()
    assert "Superfiltering" in text and "arXiv 2402.00530" in text and "| selected rows | 3 |" in text
