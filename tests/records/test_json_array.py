"""The streaming JSON-array splitter: the same elements whatever the piece size, bad input contained."""
import gzip
import json
import random

import pytest

from records import readers
from records.json_array import UNPARSED, JsonArraySplitter, split_json_array


def pieces(text, size):
    sp, out = JsonArraySplitter(), []
    for i in range(0, len(text), size):
        out += list(sp.feed(text[i : i + size]))
    return out + list(sp.close())


def random_arrays(n=200, seed=0):
    rng = random.Random(seed)
    alphabet = 'ab",\\]}[{ \n\u00e9\U0001f642'
    for _ in range(n):
        recs = [{"instruction": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))),
                 "nested": [[rng.randint(0, 9)], {"k": "}]"}]} for _ in range(rng.randint(0, 5))]
        yield json.dumps(recs, ensure_ascii=rng.random() < 0.5), recs


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
def test_any_piece_size_gives_the_elements(size):
    for text, recs in random_arrays():
        assert [json.loads(e) for e in pieces(text, size)] == recs


def test_bad_input_stays_in_its_element():
    assert list(split_json_array('  [{"a": 1}, {"b": 2')) == ['{"a": 1}', '{"b": 2']
    assert list(split_json_array('[{"a": 1}] trailing')) == ['{"a": 1}', "trailing"]
    assert list(split_json_array('[{"a": "never closed, ] }')) == ['{"a": "never closed, ] }']
    assert pieces('[{"a": "x\\\\"}, {"b": "\\""}]', 1) == ['{"a": "x\\\\"}', '{"b": "\\""}']
    assert list(split_json_array("[]")) == []
    with pytest.raises(ValueError, match="expected a JSON array"):
        list(split_json_array('{"a": 1}'))
    with pytest.raises(ValueError, match="expected a JSON array"):
        list(split_json_array("   "))


def test_file_reader_streams_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "JSON_CHUNK", 5)  # multi-byte characters and escapes cut across reads
    recs = [{"instruction": f"café 東京 🙂 \\ \" {i}", "output": "x" * i} for i in range(50)]
    path = tmp_path / "a.json.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\xef\xbb\xbf" + json.dumps(recs, ensure_ascii=False).encode())
    assert [json.loads(e) for e in readers.json_array_elements(path)] == recs


def test_fast_and_tokenizer_paths_give_the_same_elements() -> None:
    """Elements the C decoder reads and elements the tokenizer reads (damaged, NaN, empty between
    commas, cut by the piece boundary) come out in order with the same text, at any piece size."""
    text = ('[ {"a": [1, {"b": "x,]"}]} , {"bad": } ,, NaN, {"n": NaN}, "s\\"q" ,\n {"c": "\\u00e9"}, 3.5e2 ,'
            '{"deep": [[[]]]}  ]')
    want = ['{"a": [1, {"b": "x,]"}]}', '{"bad": }', "", "NaN", '{"n": NaN}', '"s\\"q"', '{"c": "\\u00e9"}',
            "3.5e2", '{"deep": [[[]]]}']
    assert list(split_json_array(text)) == want
    for size in (1, 2, 3, 7, 16):
        sp, out = JsonArraySplitter(), []
        for i in range(0, len(text), size):
            out += list(sp.feed(text[i:i + size]))
        out += list(sp.close())
        assert out == want, size


def test_fast_path_keeps_the_parsed_value() -> None:
    sp = JsonArraySplitter()
    got = [(el, sp.value) for el in sp.feed('[{"a": 1}, {"b": }, 2]')]
    assert got[0] == ('{"a": 1}', {"a": 1}) and got[2] == ("2", 2)
    assert got[1][1] is UNPARSED  # the damaged element came through the tokenizer
