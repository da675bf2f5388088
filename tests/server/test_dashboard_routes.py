"""The dashboard's sign-in, server-side sessions, static files and JSON feed, on a small app
built from real parts (limiter and sessions on the memory backend, health board, answer cache)
and a fixed monitoring source."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from stellara import __version__
from stellara.assembly import build_runtime
from stellara.assembly.config import check_config
from stellara.errors import UpstreamTimeoutError
from stellara.pipeline.sessions import SESSION_S
from stellara.server.boundary import SESSION_COOKIE as COOKIE
from stellara.server.routes import dashboard
from stellara.sim import RunningSimulator
from stellara.state.base import StateBackend
from stellara.state.memory import MemoryBackend, MemorySessionStore
from stellara.telemetry.monitoring import MonitoringService
from stellara.telemetry.stats import StatsCollector
from stellara.testing import ManualClock
from tests.conftest import MASTER_KEY, USER_KEY, StartGateway, gateway_config, routes_only
from tests.limits.fakes import DownBackend

TIER = {
    "rate": {"window_s": 60, "requests": 3},
    "quota": {"daily": {"requests": 100, "cost_usd": 2}},
}
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # a random 256-bit session token
MONITORING: dict[str, Any] = {
    "since": 1.0,
    "providers": {"sim": {"requests": 4, "errors": 1}},
    "limits": {
        "rejections": {"rate": 0, "burst": 0, "quota": 0},
        "top_users": [{"user": "alice", "requests": 4, "cost_usd": 0.01, "rejections": 0}],
    },
    "series": [],
}


class FixedMonitoring(MonitoringService):
    """Answers the same statistics each time, after `delay_s`."""

    def __init__(self, stats: dict[str, Any], delay_s: float = 0.0) -> None:
        super().__init__(StatsCollector(ManualClock()))
        self.stats = stats
        self.delay_s = delay_s

    async def detailed(self) -> dict[str, Any]:
        await asyncio.sleep(self.delay_s)
        return self.stats


class Rig:
    """One gateway's routes on their own test server (its parts not started), with a fixed
    monitoring source and the parts the feed reads."""

    def __init__(
        self,
        master_key: str | None = MASTER_KEY,
        *,
        backend: StateBackend | None = None,
        monitoring: FixedMonitoring | None = None,
        with_cache: bool = True,
        is_limited: bool = True,
    ) -> None:
        self.clock = ManualClock()
        raw = gateway_config("http://127.0.0.1:9")
        if master_key is None:
            del raw["server"]["master_key"]
        else:
            raw["server"]["master_key"] = master_key
        if with_cache:
            raw["cache"] = {}
        if is_limited:
            raw["limits"] = {"tiers": {"capped": TIER}, "default_tier": "capped"}
        runtime = build_runtime(
            check_config(raw), clock=self.clock, state_backend=backend or MemoryBackend(self.clock)
        )
        runtime = replace(runtime, monitoring=monitoring or FixedMonitoring(MONITORING))
        self.limiter = runtime.limiter
        self.health = runtime.attempts.health
        self.cache = runtime.cache
        self.client = TestClient(TestServer(routes_only(runtime)))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    built = Rig()
    async with built.client:
        yield built


def signed(expires_at: int, key: str = MASTER_KEY) -> str:
    """A cookie of the former stateless format (expiry and its HMAC), which no longer signs
    anyone in."""
    message = f"stellara-dashboard:{expires_at}".encode()
    return f"{expires_at}.{hmac.new(key.encode(), message, hashlib.sha256).hexdigest()}"


async def sign_in(client: TestClient[Any, Any]) -> None:
    response = await client.post("/dashboard/login", data={"key": MASTER_KEY})
    assert response.status == 200  # the 303 was followed to the page
    assert 'data-testid="requests-total"' in await response.text()


async def session_cookie(client: TestClient[Any, Any]) -> str:
    """Sign in and return the cookie's value (the browser keeps it too)."""
    response = await client.post(
        "/dashboard/login", data={"key": MASTER_KEY}, allow_redirects=False
    )
    assert response.status == 303
    return response.cookies[COOKIE].value


async def data_status(client: TestClient[Any, Any], cookie: str | None) -> int:
    client.session.cookie_jar.clear()
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
    response = await client.get("/dashboard/data", headers=headers)
    return response.status


async def test_dashboard_without_cookie_answers_login_form_under_strict_csp(rig: Rig) -> None:
    response = await rig.client.get("/dashboard")
    assert response.status == 200
    page = await response.text()
    assert 'action="/dashboard/login"' in page
    assert 'data-testid="login-error"' not in page
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Type"].startswith("text/html")


async def test_dashboard_pages_carry_no_inline_script_or_outside_url(rig: Rig) -> None:
    await sign_in(rig.client)
    for path in ("/dashboard", "/dashboard/static/app.js", "/dashboard/static/style.css"):
        response = await rig.client.get(path)
        assert response.status == 200, path
        text = await response.text()
        assert not re.search(r"https?://", text), path
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    page = await (await rig.client.get("/dashboard")).text()
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts == ['<script src="/dashboard/static/app.js" defer>']
    assert not re.search(r"\son\w+=", page)  # no inline event handlers either


async def test_dashboard_login_with_master_key_sets_strict_httponly_session_cookie(
    rig: Rig,
) -> None:
    response = await rig.client.post(
        "/dashboard/login", data={"key": MASTER_KEY}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard"
    header = response.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/dashboard", f"Max-Age={SESSION_S}"):
        assert attribute in header
    assert TOKEN.fullmatch(response.cookies[COOKIE].value)
    page = await rig.client.get("/dashboard")
    assert 'data-testid="requests-total"' in await page.text()
    assert (await rig.client.get("/dashboard/data")).status == 200


async def test_dashboard_login_with_wrong_key_is_refused_without_cookie(rig: Rig) -> None:
    for key in ("sk-wrong", MASTER_KEY + "x", ""):
        response = await rig.client.post(
            "/dashboard/login", data={"key": key}, allow_redirects=False
        )
        assert response.status == 200
        assert 'data-testid="login-error"' in await response.text()
        assert "Set-Cookie" not in response.headers
    assert (await rig.client.get("/dashboard/data")).status == 401
    assert 'action="/dashboard/login"' in await (await rig.client.get("/dashboard")).text()


async def test_dashboard_key_in_query_sets_cookie_and_redirects_without_it(rig: Rig) -> None:
    response = await rig.client.get(f"/dashboard?key={MASTER_KEY}", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert TOKEN.fullmatch(response.cookies[COOKIE].value)
    assert (await rig.client.get("/dashboard/data")).status == 200

    rig.client.session.cookie_jar.clear()
    wrong = await rig.client.get("/dashboard?key=sk-wrong", allow_redirects=False)
    assert wrong.status == 200
    assert 'data-testid="login-error"' in await wrong.text()
    assert "Set-Cookie" not in wrong.headers


async def test_dashboard_forged_cookies_are_refused(rig: Rig) -> None:
    genuine = await session_cookie(rig.client)
    assert await data_status(rig.client, genuine) == 200
    forged = [
        signed(int(rig.clock.time()) + 3600),  # the former format, correctly signed
        "A" * 43,  # well formed, never issued
        genuine[:-1] + ("A" if genuine[-1] != "A" else "B"),
        genuine[:-1],
        genuine + "A",
        "garbage",
        "\u00b2" * 43,
        "9" * 5000,
        None,
    ]
    for cookie in forged:
        assert await data_status(rig.client, cookie) == 401, cookie


async def test_dashboard_cookie_expires_after_twelve_hours(rig: Rig) -> None:
    await sign_in(rig.client)
    rig.clock.advance(SESSION_S - 1)
    assert (await rig.client.get("/dashboard/data")).status == 200
    rig.clock.advance(1)
    response = await rig.client.get("/dashboard/data")
    assert response.status == 401
    assert (await response.json())["error"]["type"] == "authentication_error"


async def test_dashboard_cookie_of_one_process_works_on_another_sharing_its_state() -> None:
    shared = MemoryBackend(ManualClock())  # as two processes on one Redis
    one, other = Rig(backend=shared), Rig(backend=shared)
    async with one.client, other.client:
        cookie = await session_cookie(one.client)
        assert await data_status(other.client, cookie) == 200
        logout = await other.client.post(
            "/dashboard/logout", headers={"Cookie": f"{COOKIE}={cookie}"}
        )
        assert logout.status == 200  # the 303 was followed to the form
        assert await data_status(one.client, cookie) == 401


async def test_dashboard_cookie_is_refused_under_another_master_key() -> None:
    shared = MemoryBackend(ManualClock())
    before, after = Rig(backend=shared), Rig("sk-rotated-master-key-0000", backend=shared)
    async with before.client, after.client:
        cookie = await session_cookie(before.client)
        assert await data_status(after.client, cookie) == 401
        assert await data_status(before.client, cookie) == 200


async def test_dashboard_logout_ends_the_session_not_only_the_cookie(rig: Rig) -> None:
    cookie = await session_cookie(rig.client)
    response = await rig.client.post("/dashboard/logout", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard"
    assert response.cookies[COOKIE].value == ""
    assert (await rig.client.get("/dashboard/data")).status == 401
    assert await data_status(rig.client, cookie) == 401  # a copy kept by anyone
    page = await rig.client.get("/dashboard", headers={"Cookie": f"{COOKIE}={cookie}"})
    assert 'action="/dashboard/login"' in await page.text()


async def test_dashboard_sign_in_again_ends_the_session_it_replaces(rig: Rig) -> None:
    first = await session_cookie(rig.client)  # the client's jar keeps it and sends it back
    second = await session_cookie(rig.client)
    assert second != first
    assert await data_status(rig.client, first) == 401
    assert await data_status(rig.client, second) == 200


async def test_dashboard_data_composes_every_part(rig: Rig) -> None:
    policy = rig.limiter.resolve("alice", None, None)
    assert policy is not None
    await rig.limiter.admit(policy, {"requests": 1.0, "cost_usd": 0.5}, "req_1")
    rig.health.record_call("sim", "gpt-4o-mini", 0.120, None)
    rig.health.record_call("sim", "gpt-4o-mini", 1.0, UpstreamTimeoutError("slow", provider="sim"))
    rig.clock.advance(7)
    await sign_in(rig.client)

    response = await rig.client.get("/dashboard/data")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert set(body) == {"server", "monitoring", "health", "cache", "limits"}
    assert body["server"]["version"] == __version__
    assert body["server"]["uptime_s"] == 7
    assert body["monitoring"] == MONITORING
    sim = body["health"]["providers"]["sim"]
    assert sim["error_rate"] == 0.5
    assert sim["latency_ms"]["p50"] == 120.0
    assert set(body["cache"]["levels"]) == {"l1"}
    [alice] = body["limits"]
    assert alice["user"] == "alice"
    assert alice["tier"] == "capped"
    bars = {bar["name"]: (bar["used"], bar["limit"]) for bar in alice["limits"]}
    assert bars == {
        "rate:requests": (1, 3),
        "quota:daily:requests": (1, 100),
        "quota:daily:cost_usd": (0.5, 2),
    }


async def test_dashboard_data_without_cache_or_limits_has_null_and_empty_parts() -> None:
    rig = Rig(with_cache=False, is_limited=False)
    async with rig.client:
        await sign_in(rig.client)
        body = await (await rig.client.get("/dashboard/data")).json()
    assert body["cache"] is None
    assert body["limits"] == [{"user": "alice", "tier": None, "limits": []}]
    assert body["monitoring"] == MONITORING


async def test_dashboard_data_reports_a_down_state_backend_per_user() -> None:
    rig = Rig(backend=DownBackend(sessions=MemorySessionStore()))  # limit reads fail only
    async with rig.client:
        await sign_in(rig.client)
        body = await (await rig.client.get("/dashboard/data")).json()
    assert body["limits"] == [
        {"user": "alice", "tier": None, "limits": [], "error": "state backend unavailable"}
    ]
    assert body["monitoring"] == MONITORING  # the rest of the feed still comes


async def test_dashboard_data_that_hangs_answers_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "DATA_TIMEOUT_S", 0.05)
    rig = Rig(monitoring=FixedMonitoring(MONITORING, delay_s=10))
    async with rig.client:
        await sign_in(rig.client)
        response = await rig.client.get("/dashboard/data")
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "state_backend_unavailable"


async def test_dashboard_with_state_backend_down_answers_503_never_signed_in() -> None:
    rig = Rig(backend=DownBackend())
    async with rig.client:
        response = await rig.client.get(
            "/dashboard/data", headers={"Cookie": f"{COOKIE}={'A' * 43}"}
        )
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "state_backend_unavailable"
        page = await rig.client.get("/dashboard", headers={"Cookie": f"{COOKIE}={'A' * 43}"})
        assert page.status == 503
        assert 'action="/dashboard/login"' in await page.text()
        assert 'data-testid="login-error"' in await page.text()
        login = await rig.client.post(
            "/dashboard/login", data={"key": MASTER_KEY}, allow_redirects=False
        )
        assert login.status == 503
        assert "Set-Cookie" not in login.headers
        logout = await rig.client.post(
            "/dashboard/logout", headers={"Cookie": f"{COOKIE}={'A' * 43}"}
        )
        assert logout.status == 503
        assert "until it expires" in await logout.text()
        assert logout.cookies[COOKIE].value == ""


async def test_dashboard_without_master_key_cannot_be_opened() -> None:
    rig = Rig(master_key=None)
    async with rig.client:
        response = await rig.client.post("/dashboard/login", data={"key": ""})
        assert response.status == 403
        assert "server.master_key" in await response.text()
        assert "Set-Cookie" not in response.headers
        assert await data_status(rig.client, signed(int(rig.clock.time()) + 60, key="")) == 401
        assert await data_status(rig.client, "A" * 43) == 401


async def test_dashboard_static_serves_only_its_own_files(rig: Rig) -> None:
    script = await rig.client.get("/dashboard/static/app.js")
    assert script.status == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "/dashboard/data" in await script.text()
    style = await rig.client.get("/dashboard/static/style.css")
    assert style.headers["Content-Type"].startswith("text/css")
    for name in ("index.html", "login.html", "..%2Fdashboard.py", "nope.js"):
        assert (await rig.client.get(f"/dashboard/static/{name}")).status == 404, name


async def test_a_full_gateway_serves_the_dashboard_with_its_own_numbers(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(gateway_config(sim.url))
    body = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
    # unsafe: aiohttp keeps no cookies from IP-address hosts otherwise
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        headers = {"Authorization": f"Bearer {USER_KEY}"}
        async with http.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers):
            pass
        async with http.get(f"{gateway.url}/dashboard?key={MASTER_KEY}") as page:
            assert page.status == 200  # followed the redirect to the page itself
            assert "key=" not in str(page.url)
        async with http.get(f"{gateway.url}/dashboard/data") as response:
            assert response.status == 200
            feed = await response.json()
    assert feed["monitoring"]["providers"]["sim"]["requests"] == 1
    assert "sim" in feed["health"]["providers"]
