"""Chunk scheduling: every executed action is the one the policy meant for that tick (never a step
from the past), asynchronous scheduling keeps the arm fed across chunk boundaries whenever the
latency allows, and synchronous scheduling waits at every boundary as openpi's broker does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_runtime.policy.chunks import Chunk, ChunkScheduler, Scheduling

HORIZON = 50


def policy_at(tick: int) -> np.ndarray:
    """A policy whose action for tick t is known: f(t) = t on joint 0, -t on joint 1."""
    return np.array([tick, -tick], dtype=np.float64)


def chunk_for(obs_tick: int, arrived_tick: int, chunk_id: int = 0, horizon: int = HORIZON) -> Chunk:
    actions = np.stack([policy_at(obs_tick + i) for i in range(horizon)])
    return Chunk(chunk_id, actions, obs_tick, arrived_tick, latency_s=(arrived_tick - obs_tick) / 50)


def simulate(scheduler: ChunkScheduler, delays: list[int], ticks: int) -> dict[int, np.ndarray | None]:
    """A control loop against a server whose k-th reply takes delays[k] ticks (one request in flight):
    returns the action executed on every tick, None where the loop had nothing fresh."""
    executed: dict[int, np.ndarray | None] = {}
    in_flight: tuple[int, int] | None = None  # (observation tick, arrival tick)
    replies = 0
    for tick in range(ticks):
        if in_flight is not None and in_flight[1] <= tick:
            scheduler.receive(chunk_for(in_flight[0], tick, replies))
            in_flight = None
            replies += 1
        if in_flight is None and scheduler.wants_request(tick):
            delay = delays[min(replies, len(delays) - 1)]
            if scheduler.scheduling is Scheduling.SYNC or delay == 0:
                scheduler.receive(chunk_for(tick, tick, replies))  # the synchronous loop waits inside the tick
                replies += 1
            else:
                in_flight = (tick, tick + delay)
        scheduled = scheduler.action(tick)
        executed[tick] = None if scheduled is None else scheduled.action
    return executed


@settings(max_examples=60, deadline=None)
@given(
    scheduling=st.sampled_from(Scheduling),
    per_chunk=st.one_of(st.none(), st.integers(1, HORIZON)),
    delays=st.lists(st.integers(0, 70), min_size=1, max_size=12),
)
def test_every_executed_action_is_the_one_meant_for_its_tick(
    scheduling: Scheduling, per_chunk: int | None, delays: list[int]
) -> None:
    executed = simulate(ChunkScheduler(scheduling, per_chunk), delays, ticks=400)
    for tick, action in executed.items():
        if action is not None:
            np.testing.assert_array_equal(action, policy_at(tick))


@settings(max_examples=60, deadline=None)
@given(per_chunk=st.integers(10, HORIZON), delay=st.integers(1, 8), jitter=st.lists(st.integers(0, 2), min_size=1, max_size=20))
def test_asynchronous_scheduling_never_starves_when_replies_come_within_the_chunk(
    per_chunk: int, delay: int, jitter: list[int]
) -> None:
    delays = [delay + j for j in jitter]
    executed = simulate(ChunkScheduler(Scheduling.ASYNC, per_chunk), delays, ticks=600)
    first = min(t for t, a in executed.items() if a is not None)
    starved = [t for t, a in executed.items() if t > first and a is None]
    assert starved == []


def test_synchronous_scheduling_asks_only_when_the_chunk_is_used_up() -> None:
    scheduler = ChunkScheduler(Scheduling.SYNC, actions_per_chunk=25)
    assert scheduler.wants_request(0)
    scheduler.receive(chunk_for(0, 0))
    assert not any(scheduler.wants_request(t) for t in range(25))
    assert scheduler.wants_request(25)


def test_asynchronous_scheduling_asks_early_by_the_worst_recent_delay_and_a_margin() -> None:
    scheduler = ChunkScheduler(Scheduling.ASYNC, actions_per_chunk=25, margin_ticks=2)
    scheduler.receive(chunk_for(0, 6))  # this reply took 6 ticks
    asks = [t for t in range(6, 40) if scheduler.wants_request(t)]
    assert asks[0] == 25 - 6 - 2


def test_a_late_chunk_skips_the_steps_whose_ticks_have_passed() -> None:
    scheduler = ChunkScheduler(Scheduling.ASYNC)
    scheduler.receive(chunk_for(obs_tick=10, arrived_tick=14))
    scheduled = scheduler.action(14)
    assert scheduled is not None
    assert (scheduled.step, scheduled.age_ticks) == (4, 4)
    assert scheduler.skipped_steps == 4


def test_a_chunk_arriving_after_its_whole_horizon_is_not_used() -> None:
    scheduler = ChunkScheduler(Scheduling.ASYNC)
    scheduler.receive(chunk_for(obs_tick=0, arrived_tick=0))
    scheduler.receive(chunk_for(obs_tick=5, arrived_tick=5 + HORIZON, chunk_id=1))
    assert scheduler.unusable_chunks == 1
    assert scheduler.action(5 + HORIZON) is None  # the first chunk is used up as well: the caller holds


def test_the_current_chunk_runs_past_its_budget_up_to_its_horizon_while_the_next_is_late() -> None:
    scheduler = ChunkScheduler(Scheduling.ASYNC, actions_per_chunk=10)
    scheduler.receive(chunk_for(0, 0))
    assert scheduler.action(30) is not None
    assert scheduler.action(HORIZON) is None


def test_temporal_ensembling_weights_older_chunks_by_exp_minus_m_i() -> None:
    scheduler = ChunkScheduler(Scheduling.ASYNC, ensemble_m=0.5)
    old = Chunk(0, np.zeros((HORIZON, 2)), 0, 0, 0.0)
    new = Chunk(1, np.ones((HORIZON, 2)), 4, 4, 0.0)
    scheduler.receive(old)
    scheduler.receive(new)
    scheduled = scheduler.action(5)
    assert scheduled is not None and scheduled.blended == 2
    w_old, w_new = 1.0, np.exp(-0.5)
    np.testing.assert_allclose(scheduled.action, [w_new / (w_old + w_new)] * 2)


def test_actions_per_chunk_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ChunkScheduler(Scheduling.ASYNC, actions_per_chunk=0)
