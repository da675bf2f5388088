"""Fixtures shared by the HTTP-level tests: a real simulator and real gateways on sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from stellara.assembly import Lifecycle, Runtime
from stellara.assembly.config import check_config
from stellara.server import create_app
from stellara.server.app import app_for
from stellara.sim import RunningSimulator, SimConfig, start_simulator
from stellara.state.base import StateBackend
from tests.dbs import DATABASE_KINDS, fresh_database_url

UPSTREAM_KEY = "sk-upstream-SECRET-0123456789abcdef"
USER_KEY = "sk-test-user-key-0001"
LIMITED_KEY = "sk-test-limited-key-0002"
MASTER_KEY = "sk-test-master-key-9999"


@dataclass
class RunningGateway:
    """A gateway app served on a real loopback port."""

    url: str
    app: web.Application
    runner: web.AppRunner

    @property
    def base_url(self) -> str:
        """What an OpenAI SDK takes as `base_url`."""
        return f"{self.url}/v1"


def gateway_config(sim_url: str, **overrides: Any) -> dict[str, Any]:
    """A config routing `test-model` (and a few others) to the simulator."""
    config: dict[str, Any] = {
        "server": {"master_key": MASTER_KEY, "max_body_bytes": 64 * 1024},
        "providers": [
            {"id": "sim", "type": "openai", "base_url": f"{sim_url}/v1", "api_key": UPSTREAM_KEY}
        ],
        "models": [
            {"name": "test-model", "targets": [{"provider": "sim", "model": "gpt-4o-mini"}]},
            {"name": "other-model", "targets": [{"provider": "sim", "model": "gpt-4o"}]},
        ],
        "keys": [
            {"key": USER_KEY, "user": "alice"},
            {"key": LIMITED_KEY, "user": "bob", "models": ["other-model"]},
        ],
    }
    config.update(overrides)
    return config


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    simulator = await start_simulator(SimConfig())
    yield simulator
    await simulator.close()


StartGateway = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    """Start gateways from config dicts; all are stopped at the end of the test."""
    runners: list[web.AppRunner] = []

    async def start(
        raw: dict[str, Any], *, state_backend: StateBackend | None = None
    ) -> RunningGateway:
        """`state_backend` replaces the configured one (a Redis backend with a test's own key
        prefix, say)."""
        # Retries as in production, with backoff in milliseconds so fault tests stay fast.
        raw = {"resilience": {"retry": {"base_delay_ms": 1, "max_delay_ms": 5}}, **raw}
        app = create_app(check_config(raw), state_backend=state_backend)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return RunningGateway(f"http://127.0.0.1:{port}", app, runner)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(gateway_config(sim.url))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def set_faults(sim: RunningSimulator, *faults: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.url}/_sim/faults", json={"faults": list(faults)}) as response,
    ):
        assert response.status == 200, await response.text()


async def upstream_requests(sim: RunningSimulator) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{sim.url}/_sim/requests") as r:
        body: dict[str, Any] = await r.json()
    return list(body["requests"])


@pytest.fixture(params=DATABASE_KINDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database's URL, once for SQLite and once for PostgreSQL."""
    async with fresh_database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture(autouse=True)
def _private_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default usage store is `sqlite:///stellara.db` in the working directory: each
    test gets its own directory, so no test writes into the checkout or sees another's data."""
    monkeypatch.chdir(tmp_path)


def routes_only(runtime: Runtime) -> web.Application:
    """An app serving `runtime`'s routes without starting or stopping its parts: for route
    tests that replace parts (`dataclasses.replace`) and close what they opened themselves."""
    return app_for(replace(runtime, lifecycle=Lifecycle()))
