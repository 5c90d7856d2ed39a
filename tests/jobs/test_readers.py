import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.readers import Fields, Row, content_hash, detect_format, iter_raw, normalise
from jobs.staging import stage_input
from scoring import schema
from tests.jobs.corpus import GOOD, write_corpus


def read_all(path, fmt="auto", fields=Fields()):
    fmt = detect_format(path) if fmt == "auto" else fmt
    return [normalise(r, fields) for r in iter_raw(path, fmt)]


def test_alpaca_json_array_and_gz(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps(GOOD, indent=2))
    rows = read_all(p)
    assert [r.position for r in rows] == [0, 1, 2] and all(r.error is None for r in rows)
    assert rows[1].fields[schema.INPUT] == "Good morning" and rows[2].fields[schema.INPUT] == ""
    gz = tmp_path / "a.json.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert [r.fields for r in read_all(gz)] == [r.fields for r in rows]


def test_parquet_and_custom_fields(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"prompt": ["q1", "q2"], "answer": ["a1", "a2"]}), p)
    rows = read_all(p, fields=Fields(instruction="prompt", output="answer"))
    assert [r.fields[schema.OUTPUT] for r in rows] == ["a1", "a2"]
    assert json.loads(rows[0].raw) == {"prompt": "q1", "answer": "a1"}


def test_sharegpt_scores_last_assistant_turn(tmp_path):
    conv = {"conversations": [{"from": "system", "value": "sys"}, {"from": "human", "value": "u1"},
                              {"from": "gpt", "value": "a1"}, {"from": "human", "value": "u2"},
                              {"from": "gpt", "value": "a2"}]}
    r = normalise(Row(0, json.dumps(conv), conv), Fields())
    assert r.fields[schema.INSTRUCTION] == "u2" and r.fields[schema.OUTPUT] == "a2"
    assert [t["content"] for t in json.loads(r.fields[schema.HISTORY])] == ["sys", "u1", "a1"]


def test_unknown_format_is_a_clear_error(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("hello world")
    with pytest.raises(ValueError, match="cannot detect the format"):
        detect_format(p)
    with pytest.raises(FileNotFoundError):
        stage_input(tmp_path / "missing.jsonl", tmp_path / "out")


def test_content_hash_is_stable_and_content_based():
    a = normalise(Row(0, "", dict(GOOD[0])), Fields())
    b = normalise(Row(7, "", dict(GOOD[0])), Fields())
    assert content_hash(a) == content_hash(b) and len(content_hash(a)) == 20


def test_bad_input_corpus_loses_no_row(tmp_path):
    src = tmp_path / "bad.jsonl"
    expected = write_corpus(src)
    staged = stage_input(src, tmp_path / "out", rows_per_shard=4)
    t = pa.concat_tables([pq.read_table(s) for s in staged.shards])
    assert t.column(schema.POSITION).to_pylist() == list(range(len(expected)))
    assert t.column(schema.ERROR).to_pylist() == expected
    assert len(set(t.column(schema.ID).to_pylist())) == len(expected)  # ids unique even for duplicates
    assert staged.errors["ok"] == sum(e is None for e in expected)
    assert staged.n_rows == len(expected) and len(staged.shards) == 5
