"""Per-tenant concurrency: calls in flight per user (and per key), counted on one process."""

from __future__ import annotations

import pytest

from stellara.config.models import LimitsConfig, TierConfig
from stellara.errors import ConcurrencyLimitedError
from stellara.limits.guard import AdmissionGuard
from stellara.limits.policy import LimitsPolicy
from stellara.principal import Principal
from stellara.testing import ManualClock


def guard(tier: dict[str, object]) -> AdmissionGuard:
    config = LimitsConfig.model_validate({"tiers": {"t": tier}, "default_tier": "t"})
    return AdmissionGuard(LimitsPolicy(config), ManualClock())


def test_concurrency_admits_up_to_the_tiers_limit_and_frees_on_release() -> None:
    g = guard({"concurrency": 2})
    alice = Principal("alice", "key_a")
    slots = [g.check(alice)[1] for _ in range(2)]
    assert g.in_flight("alice") == 2
    with pytest.raises(ConcurrencyLimitedError) as info:
        g.check(alice)
    assert (info.value.status_code, info.value.code, info.value.retry_after_s) == (
        429,
        "concurrency_limit_exceeded",
        1,
    )
    assert g.check(Principal("bob", "key_b"))[1] is not None  # another tenant is not held up
    slot = slots[0]
    assert slot is not None
    slot.release()
    slot.release()  # a second release gives nothing back twice
    assert g.in_flight("alice") == 1
    assert g.check(alice)[1] is not None


def test_concurrency_of_a_keys_own_limits_counts_per_key() -> None:
    g = guard({})
    limited = Principal("alice", "key_a", limits=TierConfig(concurrency=1))
    assert g.check(limited)[1] is not None
    with pytest.raises(ConcurrencyLimitedError):
        g.check(limited)
    assert g.check(Principal("alice", "key_b"))[1] is None  # her other key: no limit, no slot


def test_no_concurrency_configured_takes_no_slot() -> None:
    assert guard({"rate": {"requests": 5}}).check(Principal("alice", "key_a")) == (None, None)
