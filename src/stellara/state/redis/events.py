"""The Redis pub/sub channel `<key_prefix>:events`: the gateway's events for tools outside it."""

from __future__ import annotations

from collections.abc import Sequence

from redis.exceptions import RedisError

from stellara.errors import StateBackendError
from stellara.state.redis.pipelined import PipelinedRedis


class RedisEventChannel:
    """Publishes on the state backend's pipelined connection, whose short timeout bounds each
    batch: a Redis that is down costs a publisher little."""

    def __init__(self, commands: PipelinedRedis, *, key_prefix: str, where: str) -> None:
        self._commands = commands
        self._name = f"{key_prefix}:events"
        self._where = where

    @property
    def name(self) -> str:
        return self._name

    async def publish(self, messages: Sequence[bytes]) -> None:
        commands = [("PUBLISH", self._name, message) for message in messages]
        try:
            await self._commands.execute_all(commands)
        except (RedisError, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            raise StateBackendError(
                f"redis state backend at {self._where}: publish on {self._name}: {detail}"
            ) from exc
