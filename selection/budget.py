"""Budgets: a count, or a fraction of the *input* row count (never of a filtered count)."""
from __future__ import annotations

import math
import numbers


def resolve_budget(budget: float | int, n_input: int) -> int:
    """Rows to select. An integer is a row count (capped at ``n_input``); a float is a fraction of
    ``n_input`` in (0, 1] — ``1.0`` is every row — rounded down but at least 1 when ``n_input > 0``."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise ValueError(f"budget must be a row count (integer) or a fraction in (0, 1], got {budget!r}")
    if isinstance(budget, numbers.Integral):
        if budget < 1:
            raise ValueError(f"a budget row count must be >= 1, got {budget!r}")
        return min(int(budget), n_input)
    if math.isnan(budget) or not 0 < budget <= 1:
        raise ValueError(f"a fractional budget must be in (0, 1], got {budget!r}; "
                         f"write an integer (e.g. {max(int(budget), 1) if math.isfinite(budget) else 100}) "
                         f"for a row count")
    return max(1, int(math.floor(budget * n_input + 1e-9))) if n_input > 0 else 0
