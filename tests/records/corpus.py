"""A bad-input corpus: every kind of broken row next to good ones, with the expected outcome."""
from __future__ import annotations

import json
from pathlib import Path

GOOD = [
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "Eat a balanced diet, exercise regularly and sleep well."},
    {"instruction": "Translate to French", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "What is the capital of France?", "output": "Paris."},  # no input field at all
]

# (line bytes, expected error prefix or None)
CASES: list[tuple[bytes, str | None]] = [
    (json.dumps(GOOD[0]).encode(), None),
    (b'{"instruction": "broken", "output": ', "malformed_json"),
    (json.dumps(GOOD[1]).encode(), None),
    (b"[1, 2, 3]", "not_an_object"),
    (json.dumps({"instruction": "no output here"}).encode(), "missing_field:output"),
    (json.dumps({"instruction": "null output", "output": None}).encode(), "missing_field:output"),
    (json.dumps({"instruction": "numeric output", "output": 42}).encode(), "non_string_field:output"),
    (json.dumps({"instruction": "blank output", "output": "   "}).encode(), "empty_response"),
    (b'{"instruction": "bad bytes \xff\xfe", "output": "x"}', "invalid_utf8"),
    (json.dumps(GOOD[0]).encode(), "duplicate:0"),
    (json.dumps({"instruction": "Summarise", "input": "word " * 3000, "output": "A summary."}).encode(), None),
    (json.dumps({"instruction": "Long answer", "output": "token " * 3000}).encode(), None),
    (json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                              {"role": "user", "content": "Capital of Italy?"},
                              {"role": "assistant", "content": "Rome."}]}).encode(), None),
    (json.dumps({"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]}).encode(), None),
    (json.dumps({"messages": [{"role": "user", "content": "only a question"}]}).encode(), "bad_conversation"),
    (json.dumps({"messages": [{"role": "user", "content": ["not", "a string"]},
                              {"role": "assistant", "content": "x"}]}).encode(), "non_string_field:content"),
    (json.dumps(GOOD[2]).encode(), None),
    # nested 10,000 levels deep: more than the JSON parser's recursion allows
    (b'{"instruction": "deep", "output": "x", "extra": ' + b"[" * 10000 + b"]" * 10000 + b"}", "malformed_json"),
    (b'{"instruction": "scraped \\ud800 text", "output": "lone surrogate"}', "invalid_utf8"),
    (b'{"instruction": "emoji \\ud83d\\ude00 pair", "output": "a valid surrogate pair"}', None),
    (json.dumps({"messages": [{"role": "USER", "content": "Upper-case roles?"},
                              {"role": "ASSISTANT", "content": "Matched case-insensitively."}]}).encode(), None),
]


def write_corpus(path: Path) -> list[str | None]:
    """Write the corpus as JSONL (with a blank line, which is not a record); return expected errors."""
    lines = [c[0] for c in CASES]
    lines.insert(3, b"   ")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return [c[1] for c in CASES]
