from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from stellara.config.models import LimitsConfig
from stellara.errors import QuotaExceededError, RateLimitedError, StateBackendError
from stellara.events import (
    BurstDetected,
    BurstSpiked,
    Event,
    EventBus,
    QuotaExceeded,
    QuotaWarning,
    RateLimitExceeded,
)
from stellara.limits import Limiter, LimitEvents, LimitsPolicy, Ticket
from stellara.principal import Principal
from stellara.schema.chat import Usage
from stellara.state.base import Amounts, LimitStore
from stellara.state.memory import MemoryBackend
from stellara.testing import ManualClock

from .fakes import START, DownStore

ONE: Amounts = {"requests": 1.0}
E = TypeVar("E", bound=Event)


@dataclass
class Rig:
    limiter: Limiter
    clock: ManualClock
    events: list[Event] = field(default_factory=list)
    count: int = 0

    async def admit(
        self, amounts: Amounts = ONE, *, user: str = "alice", session: str | None = None
    ) -> Ticket:
        policy = self.limiter.resolve(user, None, session)
        assert policy is not None
        self.count += 1
        return await self.limiter.admit(policy, amounts, f"req_{self.count}")

    def named(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


def rig(
    tier: dict[str, Any],
    *,
    store: LimitStore | None = None,
    on_failure: str = "open",
    fallback_share: float = 1.0,
    **limits: Any,
) -> Rig:
    clock = ManualClock(START)
    config = LimitsConfig.model_validate({"tiers": {"t": tier}, "default_tier": "t", **limits})
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe_all(events.append)
    limiter = Limiter(
        LimitsPolicy(config),
        store or MemoryBackend(clock).limits,
        LimitEvents(bus, warn_at=config.warn_at),
        clock,
        on_failure=on_failure,  # type: ignore[arg-type]
        fallback_share=fallback_share,
    )
    return Rig(limiter, clock, events)


async def test_limiter_admits_exactly_the_request_limit():
    r = rig({"rate": {"window_s": 10, "requests": 3}})
    tickets = [await r.admit() for _ in range(5)]
    assert [t.refusal is None for t in tickets] == [True, True, True, False, False]
    refusal = tickets[3].refusal
    assert isinstance(refusal, RateLimitedError)
    assert not isinstance(refusal, QuotaExceededError)
    assert refusal.code == "rate_limit_exceeded"
    assert refusal.retry_after_s == 10
    with pytest.raises(RateLimitedError):
        tickets[3].raise_if_refused()
    assert len(r.named(RateLimitExceeded)) == 2


async def test_limiter_retry_after_is_a_whole_second_at_least():
    r = rig({"rate": {"window_s": 10, "requests": 1}})
    await r.admit()
    r.clock.advance(9.6)
    refusal = (await r.admit()).refusal
    assert refusal is not None
    assert refusal.retry_after_s == 1
    assert isinstance(refusal.retry_after_s, int)
    r.clock.advance(0.5)
    assert (await r.admit()).refusal is None  # the window slid past the first request


async def test_limiter_quota_refusal_is_insufficient_quota_until_midnight():
    r = rig({"quota": {"daily": {"requests": 2}}})
    r.clock.advance(23 * 3600)  # 23:00 UTC
    await r.admit()
    await r.admit()
    refusal = (await r.admit()).refusal
    assert isinstance(refusal, QuotaExceededError)
    assert refusal.code == "insufficient_quota"
    assert refusal.retry_after_s == 3600
    assert "2026-01-02T00:00:00Z" in refusal.message
    [event] = r.named(QuotaExceeded)
    assert event.limit == "quota:daily:requests"
    assert event.shadow is False


async def test_limiter_states_count_the_current_request():
    r = rig({"rate": {"window_s": 60, "requests": 3}})
    ticket = await r.admit()
    assert ticket.admission is not None
    [state] = ticket.admission.states
    assert (state.used, state.remaining, state.limit) == (1, 2, 3)


async def test_limiter_shadow_mode_never_refuses_but_reports():
    r = rig({"rate": {"window_s": 60, "requests": 1}, "shadow": True})
    tickets = [await r.admit() for _ in range(3)]
    assert all(t.refusal is None for t in tickets)
    last = tickets[-1].admission
    assert last is not None
    [state] = last.states
    assert (state.used, state.limit, state.remaining) == (3, 1, 0)  # true use, configured limit
    events = r.named(RateLimitExceeded)
    assert len(events) == 2
    assert all(e.shadow is True for e in events)


async def test_limiter_quota_warning_once_per_crossing():
    r = rig({"quota": {"daily": {"requests": 10}}}, warn_at=0.8)
    for _ in range(10):
        assert (await r.admit()).refusal is None
    [warning] = r.named(QuotaWarning)
    assert warning.limit == "quota:daily:requests"
    assert warning.used == 8
    r.clock.advance(86400)  # a new day, a new crossing
    for _ in range(8):
        await r.admit()
    assert len(r.named(QuotaWarning)) == 2


async def test_limiter_burst_window_refuses_past_its_limit():
    r = rig({"burst": {"window_s": 1, "requests": 2}})
    results = [(await r.admit()).refusal for _ in range(3)]
    assert results[:2] == [None, None]
    assert isinstance(results[2], RateLimitedError)
    [burst] = r.named(BurstDetected)
    assert burst.reason == "limit"
    r.clock.advance(1)
    assert (await r.admit()).refusal is None


async def test_limiter_spike_blocks_the_user_and_emits_burst_detected():
    tier = {
        "rate": {"window_s": 60, "requests": 1000},
        "burst": {"window_s": 1, "spike_factor": 5, "spike_min_requests": 3},
    }
    r = rig(tier)
    assert (await r.admit()).refusal is None  # a first request is never a spike
    assert (await r.admit()).refusal is None
    assert r.named(BurstDetected) == []
    assert (await r.admit()).refusal is None  # the third in one second: a spike, admitted
    [spike] = r.named(BurstDetected)
    assert spike.reason == "spike"
    refusal = (await r.admit()).refusal  # throttled for the burst window
    assert isinstance(refusal, RateLimitedError)
    assert refusal.code == "rate_limit_exceeded"
    assert refusal.retry_after_s == 1
    r.clock.advance(1)
    assert (await r.admit()).refusal is None


async def test_limiter_spike_is_measured_against_the_users_own_rate():
    tier = {
        "rate": {"window_s": 60, "requests": 1000},
        "burst": {"window_s": 1, "spike_factor": 5, "spike_min_requests": 3},
    }
    r = rig(tier)
    for _ in range(60):  # a steady user: one request a second for a minute
        assert (await r.admit()).refusal is None
        r.clock.advance(1)
    for _ in range(3):  # 3/s is well within 5x their 1/s: no spike
        assert (await r.admit()).refusal is None
    assert r.named(BurstDetected) == []
    r.clock.advance(1)
    for _ in range(6):  # 6/s is more than 5x their rate
        assert (await r.admit()).refusal is None
    [spike] = r.named(BurstDetected)
    assert isinstance(spike, BurstSpiked)
    assert spike.recent_rate_per_s == 6


async def test_limiter_spike_in_shadow_mode_is_reported_not_blocked():
    tier = {"burst": {"window_s": 1, "spike_factor": 5}, "shadow": True}
    r = rig(tier)
    tickets = [await r.admit() for _ in range(6)]
    assert all(t.refusal is None for t in tickets)
    assert r.named(BurstDetected)


async def test_limiter_settle_replaces_the_estimate_with_usage():
    r = rig({"rate": {"window_s": 60, "tokens": 1000}})
    first = await r.admit({"requests": 1, "tokens": 600})
    assert (await r.admit({"requests": 1, "tokens": 600})).refusal is not None
    await first.settle(Usage(prompt_tokens=50, completion_tokens=50, total_tokens=100), 0.0)
    second = await r.admit({"requests": 1, "tokens": 600})
    assert second.refusal is None
    assert second.admission is not None
    assert second.admission.states[0].used == 700


async def test_limiter_failed_call_settles_zero_tokens_but_counts_the_request():
    r = rig({"rate": {"window_s": 60, "requests": 5, "tokens": 1000, "cost_usd": 1}})
    ticket = await r.admit({"requests": 1, "tokens": 900, "cost_usd": 0.9})
    await ticket.settle(None, 0.0)
    await ticket.settle(Usage(total_tokens=999), 0.9)  # a second settle is a no-op
    policy, states, _ = await r.limiter.status("alice", None, "rate", session_id=None)
    assert policy is not None
    used = {s.name: s.used for s in states}
    assert used == {"rate:requests": 1, "rate:tokens": 0, "rate:cost_usd": 0}


async def test_limiter_session_quota_is_per_session():
    r = rig({"quota": {"session": {"requests": 1, "idle_s": 60}}})
    assert (await r.admit(session="s1")).refusal is None
    assert isinstance((await r.admit(session="s1")).refusal, QuotaExceededError)
    assert (await r.admit(session="s2")).refusal is None
    r.clock.advance(61)  # idle past the expiry: a fresh session
    assert (await r.admit(session="s1")).refusal is None


async def test_limiter_on_failure_open_keeps_the_limits_on_this_process():
    """A backend that fails never means unlimited: the process enforces the limit itself."""
    store = DownStore()
    r = rig({"rate": {"window_s": 60, "requests": 2}}, store=store, on_failure="open")
    tickets = [await r.admit() for _ in range(3)]
    assert [t.refusal is None for t in tickets] == [True, True, False]
    assert all(t.is_degraded for t in tickets)
    await tickets[0].settle(None, 0.0)  # settles on the local store: no backend call, no error
    assert store.calls == 3
    assert r.limiter.fallback.admissions_of("alice") == 2
    assert r.limiter.fallback.admissions_by_tier() == {"t": 2}
    r.clock.advance(60)
    assert (await r.admit()).refusal is None  # the local window slides like the shared one


async def test_limiter_fallback_share_is_this_processes_part_of_each_limit():
    r = rig({"rate": {"window_s": 60, "requests": 10}}, store=DownStore(), fallback_share=0.3)
    admitted = [(await r.admit()).refusal is None for _ in range(5)]
    assert admitted == [True, True, True, False, False]


async def test_limiter_circuit_skips_a_down_backend_then_tries_it_again():
    """Three failures in a row: the backend counts as down and is not called for 5 s, then
    one request tries it; a success makes the limits shared again."""
    store = DownStore()
    r = rig({"rate": {"window_s": 60, "requests": 100}}, store=store)
    for _ in range(3):
        await r.admit()
    assert (store.calls, r.limiter.circuit.is_open) == (3, True)
    for _ in range(10):
        await r.admit()
    assert store.calls == 3  # an outage costs a request no timeout
    r.clock.advance(5)
    await r.admit()
    assert store.calls == 4  # the trial, which fails: wait again
    await r.admit()
    assert store.calls == 4
    r.clock.advance(5)
    r.limiter._store = MemoryBackend(r.clock).limits  # the backend answers again
    ticket = await r.admit()
    assert not ticket.is_degraded
    assert not r.limiter.circuit.is_open


async def test_limiter_one_failure_among_successes_does_not_open_the_circuit():
    clock_store = MemoryBackend(ManualClock(START)).limits
    r = rig({"rate": {"window_s": 60, "requests": 100}}, store=clock_store)
    r.limiter._store = DownStore()
    await r.admit()
    r.limiter._store = clock_store
    await r.admit()
    assert not r.limiter.circuit.is_open


async def test_limiter_on_failure_closed_raises_503():
    store = DownStore()
    r = rig({"rate": {"window_s": 60, "requests": 1}}, store=store, on_failure="closed")
    for _ in range(5):
        with pytest.raises(StateBackendError) as info:
            await r.admit()
        assert info.value.status_code == 503
    assert store.calls == 3  # then the circuit refuses without calling


async def test_limiter_settle_failure_is_logged_not_raised():
    clock = ManualClock(START)
    memory = MemoryBackend(clock).limits
    r = rig({"rate": {"window_s": 60, "requests": 5}}, store=memory)
    ticket = await r.admit()
    ticket.store = DownStore()  # the backend goes down during the call
    await ticket.settle(None, 0.0)
    assert ticket.is_settled


async def test_limiter_remembers_a_refusal_no_request_can_pass():
    r = rig({"rate": {"window_s": 60, "requests": 1}})
    assert (await r.admit()).refusal is None
    refused = await r.admit()
    assert refused.refusal is not None
    principal = Principal("alice", "key_a")
    remembered, slot = r.limiter.guard.check(principal)
    assert remembered is not None
    assert slot is None
    error = remembered.error(r.clock.monotonic())
    assert type(error) is RateLimitedError
    assert error.retry_after_s == 10  # remembered for 10 s at most (a reset elsewhere is heard)
    assert isinstance(remembered.event, RateLimitExceeded)
    r.clock.advance(10)
    assert r.limiter.guard.check(principal) == (None, None)


async def test_limiter_does_not_remember_a_refusal_of_the_local_fallback():
    """Refused by this process's own limits during an outage: once Redis answers again, its
    count decides at once, not a memory of the outage."""
    r = rig({"rate": {"window_s": 60, "requests": 1}}, store=DownStore())
    assert (await r.admit()).refusal is None
    assert (await r.admit()).refusal is not None
    assert r.limiter.guard.check(Principal("alice", "key_a")) == (None, None)


async def test_limiter_does_not_remember_a_refusal_a_smaller_request_could_pass():
    r = rig({"rate": {"window_s": 60, "tokens": 100}})
    assert (await r.admit({"requests": 1, "tokens": 150})).refusal is not None
    assert r.limiter.guard.check(Principal("alice", "key_a")) == (None, None)


async def test_limiter_does_not_remember_a_session_quota_for_the_user():
    r = rig({"quota": {"session": {"requests": 1}}})
    await r.admit(session="s1")
    assert (await r.admit(session="s1")).refusal is not None
    assert r.limiter.guard.check(Principal("alice", "key_a")) == (None, None)


async def test_limiter_settle_forgets_a_refusal_its_reservation_caused():
    """A token window filled by an in-flight request's reservation refuses the next one and
    remembers it; once that request settles to what it used, the window has room again and
    the memory must not keep refusing."""
    r = rig({"rate": {"window_s": 60, "tokens": 100}})
    in_flight = await r.admit({"requests": 1, "tokens": 100})
    assert in_flight.refusal is None
    assert (await r.admit({"requests": 1, "tokens": 10})).refusal is not None
    principal = Principal("alice", "key_a")
    assert r.limiter.guard.check(principal)[0] is not None
    await in_flight.settle(Usage(prompt_tokens=5, completion_tokens=5, total_tokens=10), 0.0)
    assert r.limiter.guard.check(principal) == (None, None)
    assert (await r.admit({"requests": 1, "tokens": 10})).refusal is None


async def test_limiter_reset_forgets_a_remembered_refusal():
    r = rig({"rate": {"window_s": 60, "requests": 1}})
    await r.admit()
    await r.admit()
    await r.limiter.reset("alice", "rate")
    assert r.limiter.guard.check(Principal("alice", "key_a")) == (None, None)
    assert (await r.admit()).refusal is None


async def test_limiter_reset_forgets_rate_use_but_not_quotas():
    r = rig({"rate": {"window_s": 60, "requests": 1}, "quota": {"daily": {"requests": 5}}})
    await r.admit()
    await r.limiter.reset("alice", "rate")
    assert (await r.admit()).refusal is None
    _, quota, _ = await r.limiter.status("alice", None, "quota", session_id=None)
    assert [s.used for s in quota] == [2]
    await r.limiter.reset("alice", "quota")
    _, quota, _ = await r.limiter.status("alice", None, "quota", session_id=None)
    assert [s.used for s in quota] == [0]
