"""Names of what a run directory holds (one meaning per name: these are file and folder names)."""

from __future__ import annotations

SCORES_FILE = "scores.parquet"  # one row per input row: sums, counts, derived scores, outcome
SELECTED_FILE = "selected.jsonl"  # the selected input records, verbatim, in input order
SELECTED_TABLE = "selected.parquet"  # the same rows normalised (record columns + their scores), input order
CARD_FILE = "README.md"  # the dataset card: method, model, budget, counts, citation (load_dataset reads it)
MANIFEST_FILE = "manifest.json"  # config, input digest, model identity, counts, timings, versions
REPORT_FILE = "report.html"  # the human-readable report (PNG plots beside it)
RECORDS_DIR = "records"  # the staged input: position-ordered Parquet shards
SHARDS_DIR = "shards"  # per-shard stage results + completion records (resume)
EMBEDDINGS_DIR = "embeddings"  # float16 per-shard vectors beside a stage's shards
