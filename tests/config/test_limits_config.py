from __future__ import annotations

import textwrap

import pytest

from stellara.assembly.config import parse_config
from stellara.errors import ConfigError

LIMITS = """
limits:
  tiers:
    free:
      rate: {window_s: 60, requests: 20, tokens: 40000, cost_usd: 0.5}
      burst: {window_s: 1, requests: 5, spike_factor: 8}
      quota:
        daily: {requests: 1000, tokens: 200000, cost_usd: 2}
        monthly: {cost_usd: 20}
        session: {requests: 100, idle_s: 900}
    pro: {rate: {requests: 200}, shadow: true}
  users: {alice: {tier: pro, overrides: {quota: {daily: {cost_usd: 50}}}}}
  default_tier: free
  timezone: Europe/Paris
  warn_at: 0.9
  default_max_tokens_reserve: 512
keys:
  - {key: app-key-0001, user: bob, tier: pro}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), environ={})
    return info.value.problems


def test_limits_config_parses_tiers_users_and_keys():
    config = parse_config(LIMITS, environ={})
    free = config.limits.tiers["free"]
    assert free.rate is not None
    assert free.rate.cost_usd == 0.5
    assert free.burst is not None
    assert free.burst.spike_factor == 8
    assert free.quota is not None
    assert free.quota.session is not None
    assert free.quota.session.idle_s == 900
    assert config.limits.tiers["pro"].shadow is True
    assert config.limits.users["alice"].tier == "pro"
    assert config.limits.timezone == "Europe/Paris"
    assert config.limits.default_max_tokens_reserve == 512
    assert config.keys[0].tier == "pro"


def test_limits_config_defaults_mean_no_limits_and_memory_state():
    config = parse_config("{}", environ={})
    assert config.limits.tiers == {}
    assert config.limits.default_tier == "default"
    assert config.limits.timezone == "UTC"
    assert config.limits.warn_at == 0.8
    assert (config.state.backend, config.state.on_failure) == ("memory", "open")


def test_limits_config_unknown_tier_reported_with_its_path():
    problems = problems_of(
        """
        limits:
          tiers: {free: {rate: {requests: 1}}}
          users: {alice: {tier: gold}}
          default_tier: silver
        keys:
          - {key: app-key-0001, user: bob, tier: bronze}
        """
    )
    assert "limits.users.alice.tier: unknown tier 'gold' (tiers: free)" in problems
    assert "limits.default_tier: unknown tier 'silver' (tiers: free)" in problems
    assert "keys[0].tier: unknown tier 'bronze' (tiers: free)" in problems


def test_limits_config_implicit_default_tier_may_stay_undefined():
    parse_config("limits: {tiers: {pro: {rate: {requests: 1}}}}\n", environ={})


def test_limits_config_bad_timezone():
    problems = problems_of("limits: {timezone: Mars/Olympus}\n")
    assert len(problems) == 1
    assert problems[0].startswith("limits.timezone: ")
    assert "Mars/Olympus" in problems[0]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("limits: {tiers: {t: {rate: {requests: -1}}}}\n", "limits.tiers.t.rate.requests"),
        ("limits: {tiers: {t: {rate: {window_s: 0}}}}\n", "limits.tiers.t.rate.window_s"),
        ("limits: {tiers: {t: {burst: {spike_factor: 1}}}}\n", "limits.tiers.t.burst.spike_factor"),
        ("limits: {tiers: {t: {rate: {reqs: 1}}}}\n", "limits.tiers.t.rate.reqs"),
        ("limits: {tiers: {t: {quota: {weekly: {}}}}}\n", "limits.tiers.t.quota.weekly"),
        ("limits: {warn_at: 1.5}\n", "limits.warn_at"),
        ("state: {backend: etcd}\n", "state.backend"),
        ("state: {on_failure: maybe}\n", "state.on_failure"),
    ],
)
def test_limits_config_bad_values_name_their_path(text, path):
    assert any(p.startswith(f"{path}: ") for p in problems_of(text))


def test_state_config_redis_needs_url():
    assert problems_of("state: {backend: redis}\n") == [
        "state.redis_url: required when state.backend is redis"
    ]
    config = parse_config("state: {backend: redis, redis_url: 'redis://h:6379/0'}\n", environ={})
    assert config.state.redis_url == "redis://h:6379/0"
