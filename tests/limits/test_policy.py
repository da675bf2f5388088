from __future__ import annotations

from typing import Any

import pytest

from stellara.config.models import LimitsConfig, TierConfig
from stellara.limits import LimitsPolicy
from stellara.limits.policy import UNBOUNDED
from stellara.state.base import Limit, PeriodLimit, WindowLimit

from .fakes import START

TIERS: dict[str, Any] = {
    "free": {
        "rate": {"window_s": 60, "requests": 20, "tokens": 40000},
        "burst": {"window_s": 1, "requests": 5},
        "quota": {
            "daily": {"requests": 1000, "cost_usd": 2},
            "monthly": {"cost_usd": 20},
            "session": {"requests": 100, "idle_s": 600},
        },
    },
    "pro": {"rate": {"window_s": 60, "requests": 200}},
}


def policy(**overrides: Any) -> LimitsPolicy:
    raw: dict[str, Any] = {"tiers": TIERS, "default_tier": "free", **overrides}
    return LimitsPolicy(LimitsConfig.model_validate(raw), overrides.pop("key_tiers", None))


def names(
    p: LimitsPolicy, user: str, key_tier: str | None = None, session: str | None = None
) -> dict[str, Limit]:
    resolved = p.resolve(user, key_tier, session_id=session, now=START)
    assert resolved is not None
    return {limit.name: limit for limit in resolved.limits}


def test_policy_tier_order_user_then_key_then_default():
    p = policy(users={"alice": {"tier": "pro"}})
    assert p.tier_of("alice", "free") == "pro"
    assert p.tier_of("bob", "pro") == "pro"
    assert p.tier_of("bob", None) == "free"


def test_policy_key_tiers_serve_reports_about_other_users():
    config = LimitsConfig.model_validate({"tiers": TIERS, "default_tier": "free"})
    assert LimitsPolicy(config, {"carol": "pro"}).tier_of("carol") == "pro"


def test_policy_free_tier_limits_are_named_by_window_and_dimension():
    limits = names(policy(), "bob", session="s1")
    assert set(limits) == {
        "rate:requests",
        "rate:tokens",
        "burst:requests",
        "quota:daily:requests",
        "quota:daily:cost_usd",
        "quota:monthly:cost_usd",
        "quota:session:requests",
    }
    assert limits["rate:tokens"] == WindowLimit("rate:tokens", "tokens", 60, 40000)
    session = limits["quota:session:requests"]
    assert isinstance(session, PeriodLimit)
    assert (session.session_id, session.idle_s) == ("s1", 600)


def test_policy_without_session_id_has_no_session_quota():
    assert "quota:session:requests" not in names(policy(), "bob")


def test_policy_user_overrides_deep_merge_onto_the_tier():
    p = policy(users={"alice": {"overrides": {"quota": {"daily": {"cost_usd": 50}}}}})
    limits = names(p, "alice")
    assert limits["quota:daily:cost_usd"].limit == 50
    assert limits["quota:daily:requests"].limit == 1000  # kept from the tier
    assert limits["rate:requests"].limit == 20
    assert names(p, "bob")["quota:daily:cost_usd"].limit == 2  # others keep the tier


def test_policy_override_null_removes_a_tier_limit():
    p = policy(users={"alice": {"overrides": {"rate": {"tokens": None}}}})
    assert "rate:tokens" not in names(p, "alice")


def test_policy_override_on_a_tier_without_that_section():
    p = policy(users={"alice": {"tier": "pro", "overrides": {"quota": {"daily": {"tokens": 9}}}}})
    limits = names(p, "alice")
    assert limits["quota:daily:tokens"].limit == 9
    assert limits["rate:requests"].limit == 200


def test_policy_no_tiers_means_no_limits():
    p = LimitsPolicy(LimitsConfig())
    assert p.resolve("alice", "pro", session_id=None, now=START) is None
    assert not p.is_enabled


def test_policy_undefined_default_tier_leaves_user_unlimited():
    p = LimitsPolicy(LimitsConfig.model_validate({"tiers": {"pro": TIERS["pro"]}}))
    assert p.resolve("bob", None, session_id=None, now=START) is None
    assert p.resolve("bob", "pro", session_id=None, now=START) is not None


def test_policy_shadow_stores_unbounded_limits_and_reports_configured_ones():
    p = policy(tiers={"free": {**TIERS["free"], "shadow": True}})
    resolved = p.resolve("bob", None, session_id=None, now=START)
    assert resolved is not None
    assert resolved.is_shadow
    assert all(limit.limit == UNBOUNDED for limit in resolved.store_limits)
    assert {limit.limit for limit in resolved.limits} != {UNBOUNDED}


def test_policy_requests_only_tier_needs_no_token_estimate():
    p = policy(default_tier="pro")
    resolved = p.resolve("bob", None, session_id=None, now=START)
    assert resolved is not None
    assert not resolved.needs_estimate


def test_policy_spike_detection_counts_a_baseline_when_no_rate_requests():
    p = policy(tiers={"spiky": {"burst": {"window_s": 2, "spike_factor": 4}}}, default_tier="spiky")
    limits = names(p, "bob")
    assert limits["burst:requests"].limit == UNBOUNDED
    assert limits["burst:baseline"] == WindowLimit("burst:baseline", "requests", 60, UNBOUNDED)


@pytest.mark.parametrize(
    ("zone", "now", "offset"),
    [
        ("UTC", START, 0),
        ("Europe/Paris", START, 3600),  # winter
        ("Europe/Paris", START + 180 * 86400, 7200),  # summer
        ("America/New_York", START, -5 * 3600),
    ],
)
def test_policy_utc_offset_follows_the_zone_and_dst(zone, now, offset):
    p = LimitsPolicy(LimitsConfig.model_validate({"timezone": zone}))
    assert p.utc_offset_s(now) == offset


def test_policy_daily_quota_carries_the_zone_offset():
    p = policy(timezone="Asia/Kolkata")
    limit = names(p, "bob")["quota:daily:requests"]
    assert isinstance(limit, PeriodLimit)
    assert limit.utc_offset_s == 19800


def test_policy_key_limits_add_to_the_tier_counted_per_key():
    key_limits = TierConfig.model_validate(
        {"rate": {"window_s": 10, "requests": 3}, "quota": {"daily": {"cost_usd": 1}}}
    )
    resolved = policy().resolve(
        "alice", None, session_id=None, now=START, key_id="key_7", key_limits=key_limits
    )
    assert resolved is not None
    by_name = {limit.name: limit for limit in resolved.limits}
    assert by_name["rate:requests"].limit == 20  # the tier's, unchanged
    assert by_name["rate:requests@key:key_7"] == WindowLimit(
        "rate:requests@key:key_7", "requests", 10, 3
    )
    quota = by_name["quota:daily:cost_usd@key:key_7"]
    assert isinstance(quota, PeriodLimit)
    assert quota.limit == 1


def test_policy_key_limits_apply_without_any_tier():
    key_limits = TierConfig.model_validate({"rate": {"requests": 2}})
    none_configured = LimitsPolicy(LimitsConfig())
    assert none_configured.resolve("bob", None, session_id=None, now=START) is None
    resolved = none_configured.resolve(
        "bob", None, session_id=None, now=START, key_id="k", key_limits=key_limits
    )
    assert resolved is not None
    assert [limit.name for limit in resolved.limits] == ["rate:requests@key:k"]
