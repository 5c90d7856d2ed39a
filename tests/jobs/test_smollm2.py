"""The real SmolLM2-135M through the whole job: unrelated responses must score higher IFD."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import ifd
from tests.jobs.helpers import compose

pytestmark = [pytest.mark.slow, pytest.mark.ray]

PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Give three tips for staying healthy.", "Eat a balanced diet, exercise regularly, and get enough sleep."),
    ("Translate 'thank you' into Spanish.", "'Thank you' in Spanish is 'gracias'."),
    ("What is 12 multiplied by 3?", "12 multiplied by 3 is 36."),
    ("Name the largest planet in our solar system.", "Jupiter is the largest planet in our solar system."),
    ("Write a haiku about the ocean.", "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide breathes and sleeps."),
    ("Explain what photosynthesis is in one sentence.",
     "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to make glucose and oxygen."),
    ("Convert 100 degrees Celsius to Fahrenheit.", "100 degrees Celsius is 212 degrees Fahrenheit."),
    ("Who wrote the play Romeo and Juliet?", "Romeo and Juliet was written by William Shakespeare."),
    ("List the primary colors.", "The primary colors are red, blue and yellow."),
]


def test_unrelated_responses_score_higher_ifd(smollm2_dir, ray_local, tmp_path):
    rows = [{"instruction": q, "input": "", "output": a} for q, a in PAIRS]
    rows += [{"instruction": q, "input": "", "output": PAIRS[(i + 3) % len(PAIRS)][1]}
             for i, (q, _) in enumerate(PAIRS)]
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = compose("ifd", [f"data.path={src}", f"output_dir={tmp_path / 'out'}", "selection.budget=5"])
    result = ifd.run(cfg)
    t = pq.read_table(tmp_path / "out" / "scores.parquet").to_pandas()
    assert result.n_rows == 20 and t.error.isna().all()
    matched, unrelated = t.ifd_loss.values[:10], t.ifd_loss.values[10:]
    assert np.all((matched > 0) & (matched < 1.2)) and np.all(unrelated > 0)
    assert unrelated.mean() > matched.mean() + 0.15
    assert (unrelated > matched).sum() >= 7  # per instruction, the wrong answer is harder to explain
    assert t.ifd_ppl.notna().all() and (t.cond_tokens == t.uncond_tokens).all()
