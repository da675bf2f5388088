"""The dashboard in headless Chromium: sign in through the form, send traffic through the
gateway to two simulated providers, and watch the page show it live without a console error;
rate the answers, and watch the experiments panel compare the variants."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import ConsoleMessage, Error, Page, Request, async_playwright

from stellara.sim import RunningSimulator, SimConfig, start_simulator
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, StartGateway, set_faults

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).parent / "artifacts"
README_SCREENSHOT = Path(__file__).parents[2] / "docs" / "dashboard.png"
ALICE_KEY = "sk-test-alice-key-0001"
BOB_KEY = "sk-test-bob-key-0002"
CLAUDE_MODEL = "claude-3-5-haiku-latest"
REQUESTS = 60
EXPERIMENT = "mini-or-mixed"
# Every figure the page shows is non-zero once both providers' lines have a rate, a user card
# has its limit bars and the L1 cache has a hit rate.
LIVE = """() => {
  const rates = [...document.querySelectorAll('#legend-rps b')]
    .map((b) => parseFloat(b.textContent));
  return Number(document.querySelector('[data-testid=requests-total]').textContent) > 0
    && rates.length === 2 && rates.every((rate) => rate > 0)
    && document.querySelectorAll('[data-testid=user-alice] .meter').length === 3
    && document.querySelector('[data-testid=user-bob]') !== null
    && document.querySelector('[data-testid=cache-l1]') !== null;
}"""
# The experiments panel counts every value given: `expected` is {variant: values}.
RATED = f"""(expected) => Object.entries(expected).every(([variant, n]) => {{
  const row = document.querySelector(`[data-testid=variant-{EXPERIMENT}-${{variant}}]`);
  const count = row && row.querySelector('.metric .small');
  return count !== null && count.textContent === `n ${{n}}`;
}})"""
Answer = tuple[str, str, str]  # the key that asked, the request id, the variant that answered


def dashboard_config(sim_url: str) -> dict[str, Any]:
    """Two providers answering one model in turn; alice has a roomy tier, bob a small one."""
    key = UPSTREAM_KEY
    return {
        "server": {"master_key": MASTER_KEY},
        "providers": [
            {"id": "openai-sim", "type": "openai", "base_url": f"{sim_url}/v1", "api_key": key},
            {"id": "claude-sim", "type": "anthropic", "base_url": sim_url, "api_key": key},
        ],
        "models": [
            {
                "name": "smart",
                "strategy": "round_robin",
                "targets": [
                    {"provider": "openai-sim", "model": "gpt-4o-mini"},
                    {"provider": "claude-sim", "model": CLAUDE_MODEL},
                ],
            }
        ],
        "keys": [{"key": ALICE_KEY, "user": "alice"}, {"key": BOB_KEY, "user": "bob"}],
        # Each request is its own session: both users' requests are spread over the variants.
        "experiments": [
            {
                "id": EXPERIMENT,
                "model": "smart",
                "unit": "session",
                "variants": [
                    {"name": "control", "share": 50},
                    {
                        "name": "mini",
                        "share": 50,
                        "targets": [{"provider": "openai-sim", "model": "gpt-4o-mini"}],
                    },
                ],
            }
        ],
        "feedback": {"metrics": {"thumbs_up": {"type": "boolean"}}},
        "limits": {
            "tiers": {
                "default": {
                    "rate": {"window_s": 60, "requests": 200},
                    "quota": {"daily": {"requests": 1000, "cost_usd": 1}},
                },
                "small": {"rate": {"window_s": 60, "requests": 15}},
            },
            "users": {"bob": {"tier": "small"}},
        },
        "cache": {},
        "resilience": {
            "retry": {"base_delay_ms": 1, "max_delay_ms": 5},
            "circuit_breaker": {"failure_threshold": 3, "open_s": 1},
            "health_check": {"enabled": False},
        },
    }


@pytest.fixture
async def dashboard(slow_sim: RunningSimulator, start_gateway: StartGateway) -> tuple[str, str]:
    """A gateway and where its dashboard is: `(gateway URL, dashboard URL)`."""
    gateway = await start_gateway(dashboard_config(slow_sim.url))
    return gateway.url, gateway.url


async def send_traffic(url: str, count: int) -> list[Answer]:
    """Chat calls paced over a few polls; a few repeat (cache hits), bob runs into his limit.
    Answers the calls that were answered."""
    answers: list[Answer] = []
    async with aiohttp.ClientSession() as http:
        for i in range(count):
            key = BOB_KEY if i % 3 == 0 else ALICE_KEY
            body = {
                "model": "smart",
                "messages": [{"role": "user", "content": f"question {i % 20}"}],
                "max_tokens": 16,
            }
            headers = {"Authorization": f"Bearer {key}", "X-Session-Id": f"s{i}"}
            async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
                assert r.status in (200, 429), await r.text()
                if r.status == 200:
                    variant = r.headers["x-stellara-variant"]
                    answers.append((key, r.headers["x-stellara-request-id"], variant))
            await asyncio.sleep(0.04)
    return answers


async def rate(url: str, answers: list[Answer]) -> None:
    """Thumbs up on every answer of `mini`, on one in four of the control's."""
    async with aiohttp.ClientSession() as http:
        for i, (key, request_id, variant) in enumerate(answers):
            body = {"request_id": request_id, "metric": "thumbs_up", "value": variant == "mini"}
            body["value"] = body["value"] or i % 4 == 0
            headers = {"Authorization": f"Bearer {key}"}
            async with http.post(f"{url}/v1/feedback", json=body, headers=headers) as r:
                assert r.status == 200, await r.text()


@pytest.fixture
async def slow_sim() -> AsyncIterator[RunningSimulator]:
    """Answers after 20 ms, so latencies show on the charts."""
    simulator = await start_simulator(SimConfig(latency_ms=20))
    yield simulator
    await simulator.close()


async def sign_in(page: Page, url: str) -> None:
    await page.goto(f"{url}/dashboard")
    await page.fill("#key", "sk-not-the-master-key")
    await page.click("button[type=submit]")
    assert await page.text_content("[data-testid=login-error]") == "That is not the master key."
    await page.fill("#key", MASTER_KEY)
    await page.click("button[type=submit]")
    await page.wait_for_selector("[data-testid=requests-total]")
    assert page.url == f"{url}/dashboard"


async def hide_tab(page: Page, hidden: bool) -> None:
    """What the browser does when the tab goes to the background (or comes back)."""
    await page.evaluate(
        """(hidden) => {
          Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
          document.dispatchEvent(new Event('visibilitychange'));
        }""",
        hidden,
    )


async def check_experiment_panel(page: Page, rated: dict[str, int]) -> None:
    """Each variant's share, requests, cost per request and thumbs-up rate with its interval;
    the treatment's difference to the control with a verdict."""
    card = f"[data-testid=experiment-{EXPERIMENT}]"
    assert "running" in await page.inner_text(f"{card} header")
    for variant, answered in rated.items():
        row = f"[data-testid=variant-{EXPERIMENT}-{variant}]"
        cells = await page.locator(f"{row} td").all_inner_texts()
        assert cells[1] == "50.0 %"  # share
        assert int(cells[2]) >= answered  # requests: the answered ones, and refused ones
        assert cells[4].startswith("$")  # cost per request
        mean = await page.inner_text(f"{row} .metric .mean")
        assert re.fullmatch(r"\d\.\d{2,3} \[\d\.\d{2,3}, \d\.\d{2,3}\]", mean), mean
    mini_mean = await page.inner_text(f"[data-testid=variant-{EXPERIMENT}-mini] .metric .mean")
    assert mini_mean.startswith("1.00 ")  # every answer of mini got a thumbs up
    verdict = await page.inner_text(f"[data-testid=variant-{EXPERIMENT}-mini] .versus .pill")
    assert verdict in ("better", "worse", "no difference yet")
    control = f"[data-testid=variant-{EXPERIMENT}-control]"
    assert await page.locator(f"{control} [data-testid=verdict]").count() == 0


async def test_dashboard_shows_live_traffic_in_chromium(
    chromium_path: str, slow_sim: RunningSimulator, dashboard: tuple[str, str]
) -> None:
    gateway_url, url = dashboard
    # claude-sim fails its first calls: errors, retries and a breaker that opens, then heals.
    await set_faults(slow_sim, {"kind": "status", "status": 500, "model": CLAUDE_MODEL, "times": 3})
    problems: list[str] = []
    polls: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    def on_page_error(error: Error) -> None:
        problems.append(f"page error: {error}")

    def on_request(request: Request) -> None:
        if request.url.endswith("/dashboard/data"):
            polls.append(request.url)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path)
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        page.on("request", on_request)

        await sign_in(page, url)
        traffic = asyncio.create_task(send_traffic(gateway_url, REQUESTS))
        await page.wait_for_function(LIVE, timeout=10_000)  # while the traffic flows
        answers = await traffic
        await page.wait_for_function(
            f"() => document.querySelector('[data-testid=requests-total]').textContent"
            f" === '{REQUESTS}'",
            timeout=5_000,
        )
        assert await page.get_attribute("[data-testid=status]", "data-state") == "live"

        providers = await page.inner_text("[data-testid=providers]")
        assert "openai-sim" in providers
        assert "claude-sim" in providers
        assert "upstream_unavailable" in providers  # claude-sim's last error
        history = await page.inner_text("#breaker-history")
        assert re.search(r"claude-sim\s+closed\s+→\s+open", history), history
        assert await page.inner_text("[data-testid=user-bob] .meter .amount") == "15 / 15"
        assert int(await page.inner_text("[data-testid=rejections]")) > 0
        assert (await page.inner_text("[data-testid=cache-l1]")).startswith("L1")

        await rate(gateway_url, answers)
        rated = {v: sum(1 for a in answers if a[2] == v) for v in ("control", "mini")}
        await page.wait_for_function(RATED, arg=rated, timeout=10_000)  # polled every 5 s
        await check_experiment_panel(page, rated)

        ARTIFACTS.mkdir(exist_ok=True)
        shot = await page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
        if os.environ.get("STELLARA_UPDATE_SCREENSHOT"):  # the README's picture, on demand
            README_SCREENSHOT.write_bytes(shot)

        # A hidden tab stops polling; back in front, it polls at once.
        await hide_tab(page, hidden=True)
        assert await page.get_attribute("[data-testid=status]", "data-state") == "paused"
        before = len(polls)
        await asyncio.sleep(2.2)
        assert len(polls) == before
        async with page.expect_request("**/dashboard/data", timeout=1000):
            await hide_tab(page, hidden=False)

        await page.click("text=Sign out")
        await page.wait_for_selector("[data-testid=login-form]")
        await browser.close()
    assert problems == []
