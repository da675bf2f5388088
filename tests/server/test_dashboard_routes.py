"""The dashboard's sign-in, session cookie, static files and JSON feed, on a small app built
from real parts (limiter on the memory backend, health board, answer cache) and a fixed
monitoring source."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stellara import __version__
from stellara.cache.stage import AnswerCache
from stellara.config import check_config
from stellara.config.models import LimitsConfig
from stellara.errors import UpstreamTimeoutError
from stellara.limits import Limiter, LimitEvents, LimitsPolicy
from stellara.routing.health import HealthBoard
from stellara.server import routes_dashboard
from stellara.server.app import build_answer_cache
from stellara.server.routes_dashboard import COOKIE, SESSION_S, DashboardRoutes
from stellara.sim import RunningSimulator
from stellara.state.base import LimitStore
from stellara.state.memory import MemoryBackend
from stellara.telemetry.events import EventBus
from tests.conftest import MASTER_KEY, USER_KEY, StartGateway, gateway_config
from tests.limits.fakes import DownStore, FakeClock

TIER = {
    "rate": {"window_s": 60, "requests": 3},
    "quota": {"daily": {"requests": 100, "cost_usd": 2}},
}
MONITORING: dict[str, Any] = {
    "since": 1.0,
    "providers": {"sim": {"requests": 4, "errors": 1}},
    "limits": {
        "rejections": {"rate": 0, "burst": 0, "quota": 0},
        "top_users": [{"user": "alice", "requests": 4, "cost_usd": 0.01, "rejections": 0}],
    },
    "series": [],
}


class FixedMonitoring:
    """Answers the same statistics each time, after `delay_s`."""

    def __init__(self, stats: dict[str, Any], delay_s: float = 0.0) -> None:
        self.stats = stats
        self.delay_s = delay_s

    async def detailed(self) -> dict[str, Any]:
        await asyncio.sleep(self.delay_s)
        return self.stats


class Rig:
    """One dashboard app on its own test server, with what it was built from."""

    def __init__(
        self,
        master_key: str | None = MASTER_KEY,
        *,
        store: LimitStore | None = None,
        monitoring: FixedMonitoring | None = None,
        with_cache: bool = True,
        is_limited: bool = True,
    ) -> None:
        self.clock = FakeClock()
        limits = LimitsConfig.model_validate({"tiers": {"capped": TIER}, "default_tier": "capped"})
        self.limiter = Limiter(
            LimitsPolicy(limits),
            store or MemoryBackend(self.clock).limits,
            LimitEvents(EventBus(), warn_at=limits.warn_at),
            self.clock,
            on_failure="open",
        )
        self.health = HealthBoard(["sim"], self.clock)
        self.cache: AnswerCache | None = None
        if with_cache:
            config = check_config(gateway_config("http://127.0.0.1:9", cache={}))
            self.cache = build_answer_cache(config, MemoryBackend(self.clock), self.clock)
        app = web.Application()
        DashboardRoutes(
            master_key,
            monitoring or FixedMonitoring(MONITORING),
            lambda: {"providers": self.health.report()},
            self.cache,
            self.limiter if is_limited else None,
            self.clock,
        ).register(app)
        self.client = TestClient(TestServer(app))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    built = Rig()
    async with built.client:
        yield built


def signed(expires_at: int, key: str = MASTER_KEY) -> str:
    """A session cookie made the way the documented format says, independently of the code."""
    message = f"stellara-dashboard:{expires_at}".encode()
    return f"{expires_at}.{hmac.new(key.encode(), message, hashlib.sha256).hexdigest()}"


async def sign_in(client: TestClient[Any, Any]) -> None:
    response = await client.post("/dashboard/login", data={"key": MASTER_KEY})
    assert response.status == 200  # the 303 was followed to the page
    assert 'data-testid="requests-total"' in await response.text()


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


async def test_dashboard_login_with_master_key_sets_strict_httponly_signed_cookie(
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
    expires_at = int(rig.clock.time()) + SESSION_S
    assert response.cookies[COOKIE].value == signed(expires_at)
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
    assert response.cookies[COOKIE].value == signed(int(rig.clock.time()) + SESSION_S)
    assert (await rig.client.get("/dashboard/data")).status == 200

    rig.client.session.cookie_jar.clear()
    wrong = await rig.client.get("/dashboard?key=sk-wrong", allow_redirects=False)
    assert wrong.status == 200
    assert 'data-testid="login-error"' in await wrong.text()
    assert "Set-Cookie" not in wrong.headers


async def test_dashboard_forged_cookies_are_refused(rig: Rig) -> None:
    future = int(rig.clock.time()) + 3600
    genuine = signed(future)
    assert await data_status(rig.client, genuine) == 200
    forged = [
        signed(future, key="sk-some-other-key"),
        f"{future + 1}.{genuine.partition('.')[2]}",  # a longer life on the old signature
        genuine[:-1] + ("0" if genuine[-1] != "0" else "1"),
        f"{future}.",
        genuine.partition(".")[2],
        "garbage",
        "\u00b2.00",  # a digit to str.isdigit, not to int()
        "9" * 5000 + ".00",  # more digits than int() converts
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
    past = int(rig.clock.time()) - 1
    assert await data_status(rig.client, signed(past)) == 401


async def test_dashboard_cookie_of_one_process_works_on_another(rig: Rig) -> None:
    other = Rig()
    async with other.client:
        other.clock.now = rig.clock.now
        response = await rig.client.post(
            "/dashboard/login", data={"key": MASTER_KEY}, allow_redirects=False
        )
        cookie = response.cookies[COOKIE].value
        assert await data_status(other.client, cookie) == 200


async def test_dashboard_logout_clears_the_cookie(rig: Rig) -> None:
    await sign_in(rig.client)
    response = await rig.client.post("/dashboard/logout", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard"
    assert response.cookies[COOKIE].value == ""
    assert (await rig.client.get("/dashboard/data")).status == 401


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


async def test_dashboard_data_without_cache_or_limiter_has_null_and_empty_parts() -> None:
    rig = Rig(with_cache=False, is_limited=False)
    async with rig.client:
        await sign_in(rig.client)
        body = await (await rig.client.get("/dashboard/data")).json()
    assert body["cache"] is None
    assert body["limits"] == []
    assert body["monitoring"] == MONITORING


async def test_dashboard_data_reports_a_down_state_backend_per_user() -> None:
    rig = Rig(store=DownStore())
    async with rig.client:
        await sign_in(rig.client)
        body = await (await rig.client.get("/dashboard/data")).json()
    assert body["limits"] == [
        {"user": "alice", "tier": None, "limits": [], "error": "state backend unavailable"}
    ]
    assert body["monitoring"] == MONITORING  # the rest of the feed still comes


async def test_dashboard_data_that_hangs_answers_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes_dashboard, "DATA_TIMEOUT_S", 0.05)
    rig = Rig(monitoring=FixedMonitoring(MONITORING, delay_s=10))
    async with rig.client:
        await sign_in(rig.client)
        response = await rig.client.get("/dashboard/data")
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "state_backend_unavailable"


async def test_dashboard_without_master_key_cannot_be_opened() -> None:
    rig = Rig(master_key=None)
    async with rig.client:
        response = await rig.client.post("/dashboard/login", data={"key": ""})
        assert response.status == 403
        assert "server.master_key" in await response.text()
        assert "Set-Cookie" not in response.headers
        assert await data_status(rig.client, signed(int(rig.clock.time()) + 60, key="")) == 401


async def test_dashboard_static_serves_only_its_own_files(rig: Rig) -> None:
    script = await rig.client.get("/dashboard/static/app.js")
    assert script.status == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "/dashboard/data" in await script.text()
    style = await rig.client.get("/dashboard/static/style.css")
    assert style.headers["Content-Type"].startswith("text/css")
    for name in ("index.html", "login.html", "..%2Froutes_dashboard.py", "nope.js"):
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
