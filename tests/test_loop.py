"""The fixed-rate loop: ticks sit on an absolute grid, overruns are counted, never bunched up."""

import threading
import time

import pytest

from robot_runtime.loop import FixedRateLoop


@pytest.fixture
def run_fake(fake_clock):
    """Run a loop on the fake clock; each tick 'works' for work_s(index) seconds."""
    return lambda rate_hz, work_s, duration_s: _run(fake_clock, rate_hz, work_s, duration_s)


def _run(clock, rate_hz: float, work_s, duration_s: float):
    loop = FixedRateLoop(rate_hz, clock=clock, sleep=clock.sleep)
    ticks = []

    def tick(t):
        ticks.append(t)
        clock.now_s += work_s(t.index)

    stats = loop.run(tick, duration_s=duration_s)
    return ticks, stats, clock


def test_ticks_start_on_the_deadline_grid_without_drift(run_fake):
    ticks, stats, _ = run_fake(50, lambda i: 0.013 if i % 2 else 0.002, duration_s=10)
    assert len(ticks) == 500
    assert all(t.start_s == pytest.approx(100.0 + t.index * 0.02) for t in ticks)
    assert stats.achieved_hz == pytest.approx(50)
    assert stats.late_ticks == 0 and stats.missed_deadlines == 0


def test_a_slightly_late_tick_runs_at_once_and_counts_as_late(run_fake):
    ticks, stats, _ = run_fake(50, lambda i: 0.025 if i == 3 else 0.001, duration_s=1)
    assert ticks[4].lateness_s == pytest.approx(0.005)
    assert ticks[5].lateness_s == pytest.approx(0.0)  # back on the grid, no catch-up burst
    assert stats.late_ticks == 1 and stats.missed_deadlines == 0


def test_an_overrun_longer_than_a_period_skips_slots_instead_of_bursting(run_fake):
    ticks, stats, _ = run_fake(50, lambda i: 0.065 if i == 2 else 0.001, duration_s=1)
    assert [t.index for t in ticks[:5]] == [0, 1, 2, 5, 6]
    assert stats.missed_deadlines == 2
    assert all(t.start_s >= t.deadline_s for t in ticks)


def test_stats_report_period_and_lateness_percentiles(run_fake):
    _, stats, _ = run_fake(30, lambda i: 0.05 if i == 10 else 0.001, duration_s=2)
    assert stats.ticks == 60
    assert stats.period_p50_ms == pytest.approx(1000 / 30)
    assert stats.period_max_ms == pytest.approx(50)  # tick 10's work, then tick 11 at once
    assert stats.late_ticks == 1
    assert stats.as_dict()["missed_deadlines"] == 0


def test_stop_from_another_thread_ends_the_loop_after_the_current_tick():
    loop = FixedRateLoop(200)
    threading.Timer(0.2, loop.stop).start()
    started = time.monotonic()
    stats = loop.run(lambda t: None)
    assert 0.15 < time.monotonic() - started < 2.0
    assert stats.ticks > 10


def test_an_exception_in_a_tick_propagates_and_stats_survive():
    loop = FixedRateLoop(100)

    def tick(t):
        if t.index == 3:
            raise RuntimeError("motor lost")

    with pytest.raises(RuntimeError, match="motor lost"):
        loop.run(tick)
    assert loop.stats().ticks == 4


def test_rate_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        FixedRateLoop(0)
