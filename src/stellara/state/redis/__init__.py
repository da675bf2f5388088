"""The `redis` state backend: limits exact across every process sharing one Redis, and the
shared level of the answer cache with its invalidation broadcast, the circuit-breaker
broadcast, the dashboard's sessions, and the Responses API's stored responses."""

from stellara.state.redis.breakers import RedisBreakerSync
from stellara.state.redis.cache import RedisCacheStore
from stellara.state.redis.store import RedisBackend, RedisLimitStore

__all__ = ["RedisBackend", "RedisBreakerSync", "RedisCacheStore", "RedisLimitStore"]
