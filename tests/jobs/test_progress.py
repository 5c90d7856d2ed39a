"""Progress cadence and the terminal filter (no Ray)."""

from __future__ import annotations

from jobs.progress import Progress, line
from jobs.quiet import is_chatter


def test_first_update_at_once_then_every_period_and_the_end() -> None:
    now = [0.0]
    out: list[str] = []
    p = Progress("scored", 100, every_s=10, tty=False, clock=lambda: now[0], emit=out.append)
    for t, n in ((1, 5), (2, 5), (11.5, 5), (12, 5), (30, 80)):
        now[0] = t
        p.update(n)
    assert out == [line("scored", 5, 100, 1), line("scored", 15, 100, 11.5), line("scored", 100, 100, 30)]
    assert out[0].startswith("scored 5/100 rows (5.0%, 5.00 rows/s")


def test_every_update_with_zero_period() -> None:
    out: list[str] = []
    p = Progress("embedded", 3, every_s=0, tty=False, clock=lambda: 1.0, emit=out.append)
    for _ in range(3):
        p.update(1)
    assert [o.split(" rows")[0] for o in out] == ["embedded 1/3", "embedded 2/3", "embedded 3/3"]


def test_tty_gets_a_bar(capsys) -> None:
    p = Progress("scored", 4, every_s=10, tty=True)
    p.update(2)
    p.update(2)
    p.close()
    err = capsys.readouterr().err
    assert "scored" in err and "4/4" in err and "rows/s" in err


def test_chatter_filter_drops_only_ray_bookkeeping() -> None:
    drop = [
        b"[2026-12-02 19:29:02,292 E 3127 3127] core_worker.cc:2465: Actor with class name: 'MapWorker' "
        b"has constructor arguments in the object store and max_restarts > 0.",
        b"\x1b[33m(raylet)\x1b[0m [2026-12-02 19:34:02,276 W 4950 4950] worker_pool.cc:580: Started 8 PYTHON "
        b"worker processes",
        b"[2026-12-02 19:34:01,890 I 4777 4777] logging.cc:303: Set ray log level",
    ]
    keep = [
        b"[2026-12-02 19:29:02,292 E 3127 3127] core_worker.cc:1: a real failure",
        b"[2026-12-02 19:29:02,292 F 3127 3127] raylet.cc:1: fatal",
        b"winnow: error: input file not found: x.jsonl",
        b"Traceback (most recent call last):",
    ]
    assert all(is_chatter(x) for x in drop) and not any(is_chatter(x) for x in keep)
