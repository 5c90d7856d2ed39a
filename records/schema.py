"""The one record schema: column names shared by readers, scorers, outputs and selection.

Scores are stored as sums and counts per pass (``<pass>_nll_sum``, ``<pass>_tokens``) so that every
derived score (IFD loss ratio, IFD perplexity ratio, RPE) can be recomputed without rescoring.
"""

from __future__ import annotations

ID = "id"
POSITION = "position"
RAW = "raw"  # the input record, verbatim (JSONL line / JSON element / Parquet row as JSON)
INSTRUCTION = "instruction"
INPUT = "input"
OUTPUT = "output"
HISTORY = "history"  # JSON list of {"role","content"} turns before the scored exchange ("" if none)
ERROR = "error"  # None when the row is valid so far; else a short reason code

PROMPT_TOKENS = "prompt_tokens"  # context tokens of the conditioned pass (after truncation)
RESPONSE_TOKENS = "response_tokens"  # response tokens present in the input (before truncation)
TRUNCATED = "truncated"  # the prompt was cut from the left
RESPONSE_TRUNCATED = "response_truncated"  # the response was cut (only where the config allows it)

# Columns a staged record carries into the scoring pipeline (RAW stays on disk).
RECORD_COLUMNS = [ID, POSITION, INSTRUCTION, INPUT, OUTPUT, HISTORY, ERROR]

# Retrieval (RECOST): what the knowledge-conditioned pass puts before the sample's own prompt.
KNOWLEDGE = "knowledge"  # rendered knowledge block (text); "" when nothing was retrieved
KB_IDS = "kb_ids"  # retrieved KB item ids, most relevant first
KB_SIMS = "kb_sims"  # their cosine similarities to the query
KNOWLEDGE_TOKENS = "knowledge_tokens"  # knowledge tokens kept in the know pass
KNOWLEDGE_TRUNCATED = "knowledge_truncated"  # knowledge was cut to fit the window
EMB = "emb"  # query embedding column while in flight (stored apart as float16)
NODE_ID = "_node_id"  # the Ray node of the actor that produced a row, while in flight (kept in the .done record)


def nll_sum_col(pass_name: str) -> str:
    """Column holding the summed response-token NLL (nats) of one pass."""
    return f"{pass_name}_nll_sum"


def tokens_col(pass_name: str) -> str:
    """Column holding the number of scored response tokens of one pass."""
    return f"{pass_name}_tokens"


# Error reason codes (the manifest counts rows by these).
E_MALFORMED = "malformed_json"
E_NOT_OBJECT = "not_an_object"
E_BAD_UTF8 = "invalid_utf8"
E_MISSING = "missing_field"  # suffixed with ":<field>"
E_NOT_STRING = "non_string_field"  # suffixed with ":<field>"
E_EMPTY_RESPONSE = "empty_response"
E_DUPLICATE = "duplicate"  # suffixed with ":<position of first occurrence>"
E_RESPONSE_TOO_LONG = "response_too_long"
E_NO_CONTEXT_ROOM = "prompt_fills_window"
E_CHERRY_GUARD = "cherry_length_guard"
E_NO_TOKENS = "no_response_tokens"
E_SCORER = "scorer_failed"
E_ACTOR_DIED = "actor_died"  # the row killed its actor's process on every try (jobs.crash_guard)
E_BAD_CONVERSATION = "bad_conversation"
