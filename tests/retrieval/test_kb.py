"""KB rows (examples, paragraphs, rejections) and the knowledge block's rendering."""
import json

import pytest

from records.readers import Fields
from retrieval.kb import read_kb
from retrieval.knowledge import knowledge_block, render_item
from scoring.templates import render_prompt


def test_examples_paragraphs_and_rejections(tmp_path):
    recs = [{"instruction": "Name a colour.", "input": "", "output": "Blue."},
            {"text": "Paris is the capital of France."},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
            {"instruction": "Name a colour.", "input": "", "output": "Blue."},   # duplicate
            {"instruction": "Empty", "output": " "},                               # empty response
            {"text": "   "}]                                                       # empty paragraph
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n{not json\n")
    kb = read_kb(path, "jsonl", Fields())
    assert [r["kind"] for r in kb.rows] == ["example", "paragraph", "example"]
    assert kb.rows[0]["query"] == "Name a colour." and kb.rows[1]["query"] == "Paris is the capital of France."
    assert kb.rejected == {"duplicate": 1, "empty_response": 1, "empty_text": 1, "malformed_json": 1}
    assert sum(kb.rejected.values()) + len(kb.rows) == len(recs) + 1   # nothing vanishes
    assert len({r["kb_id"] for r in kb.rows}) == 3


def test_example_ids_equal_pool_ids(tmp_path):
    """The same record hashes to the same id in the KB and in the pool (self-exclusion relies on it)."""
    from records.staging import stage_input
    import pyarrow.parquet as pq

    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"instruction": "Add 2 and 2.", "input": "", "output": "4"}) + "\n")
    kb = read_kb(path, "jsonl", Fields())
    staged = stage_input(path, tmp_path / "out")
    assert pq.read_table(staged.shards[0]).column("id").to_pylist() == [kb.rows[0]["kb_id"]]


ITEMS = [{"kind": "example", "instruction": "Best?", "input": "", "output": "A", "history": "", "text": ""},
         {"kind": "paragraph", "instruction": "", "input": "", "output": "", "history": "", "text": "Fact two."}]


def test_knowledge_block_puts_most_relevant_last():
    block = knowledge_block(ITEMS, "alpaca")
    assert block == "Reference: Fact two.\n\n" + render_prompt("alpaca", "Best?", "", []) + "A\n\n"
    assert knowledge_block([], "alpaca") == ""


def test_plain_style_and_chat_template():
    assert render_item(ITEMS[0], "alpaca", "plain") == "Question: Best?\nAnswer: A"
    assert render_item(ITEMS[0], "chat") == "Question: Best?\nAnswer: A"
    with pytest.raises(ValueError, match="style"):
        knowledge_block(ITEMS, "alpaca", "fancy")
