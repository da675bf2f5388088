"""The `redis` state backend: limits exact across every process sharing one Redis."""

from stellara.state.redis.store import RedisBackend, RedisLimitStore

__all__ = ["RedisBackend", "RedisLimitStore"]
