import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from records.readers import Fields, Row, content_hash, detect_format, iter_raw, normalise
from records.staging import stage_input
from records import schema
from tests.records.corpus import GOOD, write_corpus


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
    assert staged.n_rows == len(expected) and len(staged.shards) == -(-len(expected) // 4)


def test_bom_is_decoded_for_jsonl_and_json(tmp_path):
    rec = json.dumps(GOOD[0]).encode()
    jl = tmp_path / "bom.jsonl"
    jl.write_bytes(b"\xef\xbb\xbf" + rec + b"\n" + rec + b"\n")
    rows = read_all(jl)
    assert [r.error for r in rows] == [None, None] and rows[0].fields == rows[1].fields
    arr = tmp_path / "bom.json"
    arr.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode())
    assert detect_format(arr) == "json" and [r.error for r in read_all(arr)] == [None] * 3


def test_json_extension_decides_and_json_lines_in_dot_json_are_read(tmp_path):
    p = tmp_path / "lines.json"
    p.write_text("\n".join(json.dumps(g) for g in GOOD) + "\n")
    assert detect_format(p) == "jsonl"
    odd = tmp_path / "odd.json"
    odd.write_text("  not json at all")
    assert detect_format(odd) == "json"
    with pytest.raises(ValueError, match="expected a JSON array"):
        read_all(odd)


def test_json_array_elements_fail_alone(tmp_path):
    """A damaged or absurdly nested element is one bad record; an unterminated array keeps its rows."""
    deep = "[" * 10000 + "]" * 10000
    text = "[" + json.dumps(GOOD[0]) + ', {"instruction": "d", "output": "x", "e": ' + deep + "}, " \
        + '{"broken": }, "a string", ' + json.dumps(GOOD[1]) + ', {"instruction": "tail", "out'
    p = tmp_path / "damaged.json"
    p.write_text(text)
    rows = read_all(p)
    assert [r.error for r in rows] == [None, "malformed_json", "malformed_json", "not_an_object", None,
                                       "malformed_json"]
    from records.staging import scan

    assert scan(p, "json")[0] == len(rows)


def test_nan_in_a_record_becomes_null_in_the_raw_line(tmp_path):
    p = tmp_path / "nan.jsonl"
    p.write_text('{"instruction": "q", "output": "a", "score": NaN, "inf": [Infinity]}\n')
    (row,) = read_all(p)
    assert row.error is None and json.loads(row.raw, parse_constant=lambda c: pytest.fail(c)) == \
        {"instruction": "q", "output": "a", "score": None, "inf": [None]}
