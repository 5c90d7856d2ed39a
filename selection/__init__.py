"""Pure selection math: score formulas, budgets, top-k, k-center, clustering, diversity, rank fusion.

Nothing here imports Ray, Arrow or touches files: functions take numpy arrays and return indices.
"""
