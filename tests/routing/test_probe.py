"""Active health probes: results reach the health board; one process probes per round."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from stellara.config.models import HealthCheckConfig
from stellara.errors import UpstreamUnavailableError
from stellara.routing.health import HealthBoard
from stellara.routing.probe import HealthProber
from stellara.schema.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ResponseMessage,
)
from stellara.state.memory import MemoryLimitStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


class FakeAdapter:
    def __init__(self, provider_id: str, *, fails: bool = False) -> None:
        self._id = provider_id
        self.fails = fails
        self.asked: list[tuple[str, int | None]] = []

    @property
    def id(self) -> str:
        return self._id

    async def chat(self, request: ChatRequest, model: str, *, timeout_s: float) -> ChatCompletion:
        self.asked.append((model, request.max_tokens))
        if self.fails:
            raise UpstreamUnavailableError("down", provider=self._id, upstream_status=503)
        message = ResponseMessage("assistant", "pong")
        return ChatCompletion("c", "chat.completion", 0, model, [Choice(0, message, "stop")])

    async def chat_stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def close(self) -> None:
        return None


def prober(adapters: dict[str, Any], health: HealthBoard, **kw: Any) -> HealthProber:
    models = {name: f"{name}-model" for name in adapters}
    return HealthProber(adapters, models, health, HealthCheckConfig(), FakeClock(), **kw)


async def test_probe_results_reach_the_health_board() -> None:
    clock = FakeClock()
    up, down = FakeAdapter("up"), FakeAdapter("down", fails=True)
    health = HealthBoard(["up", "down"], clock)
    await prober({"up": up, "down": down}, health).probe_all()
    assert up.asked == [("up-model", 1)]  # a 1-token request
    assert health.status("down") == "unhealthy"
    assert health.status("up") == "healthy"
    last_probe: Any = health.report()["down"]["last_probe"]
    assert last_probe["ok"] is False


async def test_probe_round_is_won_by_one_process_per_interval() -> None:
    clock = FakeClock()
    store = MemoryLimitStore(clock)
    health = HealthBoard(["p"], clock)
    first = prober({"p": FakeAdapter("p")}, health, lock=store)
    second = prober({"p": FakeAdapter("p")}, health, lock=store)
    assert [await first._won_round(), await second._won_round()] == [True, False]
    clock.now += HealthCheckConfig().interval_s
    assert await second._won_round() is True
