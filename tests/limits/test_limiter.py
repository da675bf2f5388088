from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from stellara.config.models import LimitsConfig
from stellara.errors import QuotaExceededError, RateLimitedError, StateBackendError
from stellara.limits import Limiter, LimitEvents, LimitsPolicy, Ticket
from stellara.schema.chat import Usage
from stellara.state.base import Amounts, LimitStore
from stellara.state.memory import MemoryBackend
from stellara.telemetry.events import Event, EventBus

from .fakes import DownStore, FakeClock

ONE: Amounts = {"requests": 1.0}


@dataclass
class Rig:
    limiter: Limiter
    clock: FakeClock
    events: list[Event] = field(default_factory=list)
    count: int = 0

    async def admit(
        self, amounts: Amounts = ONE, *, user: str = "alice", session: str | None = None
    ) -> Ticket:
        policy = self.limiter.resolve(user, None, session)
        assert policy is not None
        self.count += 1
        return await self.limiter.admit(policy, amounts, f"req_{self.count}")

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


def rig(
    tier: dict[str, Any],
    *,
    store: LimitStore | None = None,
    on_failure: str = "open",
    **limits: Any,
) -> Rig:
    clock = FakeClock()
    config = LimitsConfig.model_validate({"tiers": {"t": tier}, "default_tier": "t", **limits})
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe("*", events.append)
    limiter = Limiter(
        LimitsPolicy(config),
        store or MemoryBackend(clock).limits,
        LimitEvents(bus, warn_at=config.warn_at),
        clock,
        on_failure=on_failure,  # type: ignore[arg-type]
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
    assert len(r.named("rate_limit.exceeded")) == 2


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
    [event] = r.named("quota.exceeded")
    assert event.data["limit"] == "quota:daily:requests"
    assert event.data["shadow"] is False


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
    events = r.named("rate_limit.exceeded")
    assert len(events) == 2
    assert all(e.data["shadow"] is True for e in events)


async def test_limiter_quota_warning_once_per_crossing():
    r = rig({"quota": {"daily": {"requests": 10}}}, warn_at=0.8)
    for _ in range(10):
        assert (await r.admit()).refusal is None
    [warning] = r.named("quota.warning")
    assert warning.data["limit"] == "quota:daily:requests"
    assert warning.data["used"] == 8
    r.clock.advance(86400)  # a new day, a new crossing
    for _ in range(8):
        await r.admit()
    assert len(r.named("quota.warning")) == 2


async def test_limiter_burst_window_refuses_past_its_limit():
    r = rig({"burst": {"window_s": 1, "requests": 2}})
    results = [(await r.admit()).refusal for _ in range(3)]
    assert results[:2] == [None, None]
    assert isinstance(results[2], RateLimitedError)
    [burst] = r.named("burst.detected")
    assert burst.data["reason"] == "limit"
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
    assert r.named("burst.detected") == []
    assert (await r.admit()).refusal is None  # the third in one second: a spike, admitted
    [spike] = r.named("burst.detected")
    assert spike.data["reason"] == "spike"
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
    assert r.named("burst.detected") == []
    r.clock.advance(1)
    for _ in range(6):  # 6/s is more than 5x their rate
        assert (await r.admit()).refusal is None
    [spike] = r.named("burst.detected")
    assert spike.data["recent_rate_per_s"] == 6


async def test_limiter_spike_in_shadow_mode_is_reported_not_blocked():
    tier = {"burst": {"window_s": 1, "spike_factor": 5}, "shadow": True}
    r = rig(tier)
    tickets = [await r.admit() for _ in range(6)]
    assert all(t.refusal is None for t in tickets)
    assert r.named("burst.detected")


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


async def test_limiter_on_failure_open_admits_without_limits():
    store = DownStore()
    r = rig({"rate": {"window_s": 60, "requests": 1}}, store=store, on_failure="open")
    ticket = await r.admit()
    assert ticket.is_degraded
    assert ticket.refusal is None
    await ticket.settle(None, 0.0)  # nothing reserved: no call, no error
    assert store.calls == 1


async def test_limiter_on_failure_closed_raises_503():
    r = rig({"rate": {"window_s": 60, "requests": 1}}, store=DownStore(), on_failure="closed")
    with pytest.raises(StateBackendError) as info:
        await r.admit()
    assert info.value.status_code == 503


async def test_limiter_settle_failure_is_logged_not_raised():
    clock = FakeClock()
    memory = MemoryBackend(clock).limits
    r = rig({"rate": {"window_s": 60, "requests": 5}}, store=memory)
    ticket = await r.admit()
    ticket.store = DownStore()  # the backend goes down during the call
    await ticket.settle(None, 0.0)
    assert ticket.is_settled


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
