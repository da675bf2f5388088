from stellara.assembly.config import check_config
from stellara.config.secrets import secret_values
from tests.conftest import LIMITED_KEY, MASTER_KEY, UPSTREAM_KEY, USER_KEY, gateway_config


def test_secret_values_finds_every_secret_of_a_config() -> None:
    raw = gateway_config("http://127.0.0.1:9")
    raw["state"] = {"backend": "redis", "redis_url": "redis://:redis-password@cache:6379/0"}
    raw["usage_store"] = {"url": "postgresql://app:db-password@db/stellara"}
    raw["telemetry"] = {"webhooks": [{"url": "https://hooks.example.com", "secret": "whsec-1"}]}
    found = secret_values(check_config(raw))
    assert set(found) == {
        MASTER_KEY,
        UPSTREAM_KEY,
        USER_KEY,
        LIMITED_KEY,
        "redis-password",
        "db-password",
        "whsec-1",
    }
