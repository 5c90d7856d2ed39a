"""The dataset card (``README.md`` in the run directory): what was selected, how, from what, and whom to
cite. Its YAML header points ``datasets.load_dataset(<run dir>)`` at ``selected.parquet``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from records import writers
from records.layout import CARD_FILE, SELECTED_FILE, SELECTED_TABLE

# job name (as manifests record it) or method variant -> (title, citation)
CITATIONS: dict[str, tuple[str, str]] = {
    "ifd": (
        "IFD (Cherry LLM)",
        "Li et al., From Quantity to Quality: Boosting LLM Performance with Self-Guided Data Selection "
        "for Instruction Tuning, NAACL 2024 (arXiv 2308.12032)",
    ),
    "cherry": (
        "Cherry LLM with a pre-experienced model",
        "Li et al., From Quantity to Quality: Boosting LLM Performance with Self-Guided Data Selection "
        "for Instruction Tuning, NAACL 2024 (arXiv 2308.12032)",
    ),
    "superfilter": (
        "Superfiltering",
        "Li et al., Superfiltering: Weak-to-Strong Data Filtering for Fast Instruction-Tuning, ACL 2024 "
        "(arXiv 2402.00530)",
    ),
    "diverse_evol": (
        "DiverseEvol",
        "Wu et al., Self-Evolved Diverse Data Sampling for Efficient Instruction Tuning, arXiv 2311.08182",
    ),
    "recost": (
        "RECOST",
        "Zhang et al., RECOST: External Knowledge Guided Data-efficient Instruction Tuning, Findings of "
        "ACL 2024 (arXiv 2402.17355)",
    ),
    "rds": (
        "RDS+",
        "Ivison et al., Large-Scale Data Selection for Instruction Tuning, 2025 (arXiv 2503.01807)",
    ),
    "baseline": ("a baseline (no model judgement)", ""),
    "curate": (
        "Winnow's curated pipeline (near-copies out, quality guards, ranking)",
        "Abbas et al., SemDeDup, arXiv 2303.09540; Li et al., From Quantity to Quality (IFD), NAACL 2024 "
        "(arXiv 2308.12032); Zhang et al., RECOST, Findings of ACL 2024 (arXiv 2402.17355)",
    ),
}


def method_key(manifest: dict[str, Any]) -> str:
    """The citation key of a run: the IFD job's variant where it has one (superfilter), else the job."""
    job = str(manifest.get("job", ""))
    variant = manifest.get("config", {}).get("method", {}).get("variant")
    return "superfilter" if job == "ifd" and variant == "superfilter" else job


def _count(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def card_text(manifest: dict[str, Any], n_selected: int) -> str:
    """The card's Markdown: YAML header for ``load_dataset``, then the run in a few lines."""
    key = method_key(manifest)
    title, cite = CITATIONS.get(key, (key, ""))
    cfg = manifest.get("config", {})
    model = manifest.get("model", {}).get("name") or cfg.get("model", {}).get("name", "–")
    budget = cfg.get("selection", {}).get("budget", "–")
    inp = manifest.get("input", {})
    outcomes = manifest.get("selection", {}).get("outcomes") or manifest.get("outcomes") or {}
    if cfg.get("baseline"):
        title = f"{title}: {cfg['baseline']}"
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: {SELECTED_TABLE}",
        "tags:",
        "- winnow",
        "- data-selection",
        "---",
        "",
        f"# Selected subset: {title}",
        "",
        f"Selected by Winnow (`winnow {str(manifest.get('job', '')).replace('_', '-')}`) "
        f"from `{inp.get('path', '–')}` (sha256 `{str(inp.get('sha256', '–'))[:16]}…`).",
        "",
        "| | |",
        "|---|---|",
        f"| method | {title} |",
        f"| scoring model | `{model}` |",
        f"| budget | {budget} |",
        f"| input rows | {inp.get('rows', '–')} |",
        f"| selected rows | {n_selected} |",
    ]
    lines += [f"| rows {k} | {v} |" for k, v in sorted(outcomes.items()) if k != "selected"]
    lines += [
        "",
        f"`{SELECTED_FILE}` holds the selected input records verbatim, in input order; "
        f"`{SELECTED_TABLE}` the same rows normalised (instruction, input, output, history) with their "
        "scores. `manifest.json` records the full configuration, digests and timings; `report.html` shows "
        "the selection.",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("<this directory>")["train"]',
        "```",
    ]
    if cite:
        lines += ["", "## Citation", "", f"Method: {cite}."]
    return "\n".join(lines) + "\n"


def write_card(out: Path, manifest: dict[str, Any]) -> Path | None:
    """Write ``README.md`` beside a run's ``selected.jsonl`` (nothing when the run selected nothing to a file)."""
    selected = out / SELECTED_FILE
    if not selected.is_file():
        return None
    path = out / CARD_FILE
    writers.write_text(card_text(manifest, _count(selected)), path)
    return path
