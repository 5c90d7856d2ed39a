"""Model passes: prompt rendering, exact response spans, per-token NLL sums (HF and vLLM backends)."""
