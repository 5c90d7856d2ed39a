"""Budgets: a count, or a fraction of the *input* row count (never of a filtered count)."""
from __future__ import annotations

import math


def resolve_budget(budget: float | int, n_input: int) -> int:
    """Rows to select. ``budget >= 1`` (int-valued) is a count; ``0 < budget < 1`` a fraction of
    ``n_input``, rounded down but at least 1 when ``n_input > 0``. Counts are capped at ``n_input``."""
    if isinstance(budget, bool) or budget is None or budget <= 0 or math.isnan(budget):
        raise ValueError(f"budget must be a positive count or a fraction in (0, 1), got {budget!r}")
    if budget < 1:
        return max(1, int(math.floor(budget * n_input + 1e-9))) if n_input > 0 else 0
    if float(budget) != int(budget):
        raise ValueError(f"a budget >= 1 is a row count and must be an integer, got {budget!r}")
    return min(int(budget), n_input)
