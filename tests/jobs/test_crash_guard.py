"""The crash journal's state machine: a process death is simulated by an exception that escapes
``CrashGuard.run`` (nothing in memory survives it; the next call is the retried task on a restarted
actor and sees only the journal on disk)."""
import numpy as np
import pytest

from jobs.crash_guard import CrashGuard, batch_key, halves


class ProcessDied(BaseException):
    pass


def blank(k):
    return {"x": np.full(k, np.nan), "error": np.full(k, None, dtype=object)}


def scorer(poison, calls):
    def fn(lo, hi):
        calls.append((lo, hi))
        if poison & set(range(lo, hi)):
            raise ProcessDied
        return {"x": np.arange(lo, hi, dtype=float) * 10, "error": np.full(hi - lo, None, dtype=object)}
    return fn


def retried(guard, n, fn, limit=100):
    """Call as Ray does: retry the task on a fresh actor until it returns."""
    for crashes in range(limit):
        try:
            return guard.run("k", n, fn), crashes
        except ProcessDied:
            continue
    raise AssertionError("never finished")


def test_poison_row_is_bisected_out_after_bounded_retries(tmp_path):
    calls = []
    guard = CrashGuard(str(tmp_path / "j"), 3, blank, "error", "actor_died")
    out, crashes = retried(guard, 8, scorer({5}, calls))
    assert out["error"].tolist() == [None] * 5 + ["actor_died"] + [None] * 2
    assert out["x"][[0, 1, 2, 3, 4, 6, 7]].tolist() == [0, 10, 20, 30, 40, 60, 70] and np.isnan(out["x"][5])
    # 3 whole-batch tries, [4,8) and [4,6) once each, row 5 three times
    assert crashes == 3 + 1 + 1 + 3
    assert calls[:3] == [(0, 8)] * 3 and calls.count((5, 6)) == 3
    assert not any((tmp_path / "j").iterdir())  # the entry is gone once the batch is done


def test_a_transient_death_is_just_retried(tmp_path):
    calls, died = [], []

    def once(lo, hi):
        calls.append((lo, hi))
        if not died:
            died.append(1)
            raise ProcessDied
        return {"x": np.arange(lo, hi, dtype=float), "error": np.full(hi - lo, None, dtype=object)}

    out, crashes = retried(CrashGuard(str(tmp_path), 3, blank, "error", "actor_died"), 4, once)
    assert crashes == 1 and calls == [(0, 4), (0, 4)] and out["x"].tolist() == [0, 1, 2, 3]


def test_two_poison_rows_and_no_journal(tmp_path):
    guard = CrashGuard(str(tmp_path), 1, blank, "error", "actor_died")
    out, _ = retried(guard, 6, scorer({0, 4}, []))
    assert out["error"].tolist() == ["actor_died", None, None, None, "actor_died", None]
    with pytest.raises(ProcessDied):  # without a journal a death is Ray's to retry, as before
        CrashGuard(None, 3, blank, "error", "actor_died").run("k", 6, scorer({0}, []))


def test_helpers():
    assert halves(0, 5) == [(0, 2), (2, 5)] and halves(3, 4) == [(3, 4)]
    assert batch_key(np.array([12, 13])) == "b000000000012-2"
