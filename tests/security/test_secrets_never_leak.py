"""Secrets never leak (DESIGN §2: "Secrets never appear in logs, errors, `/metrics` or admin
responses"): one gateway is driven through every route, success and failure, while every
surface an operator or client can observe is captured; then each is scanned for each secret.

Surfaces: every response (status line, headers, body) the test receives; every log record at
DEBUG (the JSON event log sink included); every event on the app's bus; every webhook delivery
(headers and body); the usage records (JSON, CSV and the SQLite file's bytes); and the messages
of the exceptions a bad config raises. Secrets: both providers' keys, the master key, the static
virtual keys, a key created through `POST /admin/keys` (in full: its prefix may show) and the
webhook secret, each also base64- and URL-encoded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import msgspec
import orjson
import pytest
from aiohttp import web

from stellara.assembly.config import check_config
from stellara.errors import ConfigError
from stellara.events import Event
from stellara.server import create_app
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from tests.conftest import (
    LIMITED_KEY,
    MASTER_KEY,
    UPSTREAM_KEY,
    USER_KEY,
    gateway_config,
    set_faults,
)

pytestmark = pytest.mark.e2e

SECOND_PROVIDER_KEY = "sk-ant-second-SECRET-fedcba9876543210"
HOOK_SECRET = "whsec-SECRET-hook-0a1b2c3d4e5f"
ECHOING_ERROR = {
    "error": {
        "message": f"Incorrect API key provided: {UPSTREAM_KEY} / {SECOND_PROVIDER_KEY}",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hello"}]}
CLAUDE = {
    "model": "claude-model",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "hi"}],
}


# --- the scanner --------------------------------------------------------------------------


def encoded_forms(secret: str) -> dict[str, bytes]:
    """`secret` as it could be written down: raw, base64 (standard and URL-safe, with and
    without padding) and URL-encoded."""
    raw = secret.encode()
    forms = {"raw": raw}
    for name, encoded in (
        ("base64", base64.b64encode(raw)),
        ("base64url", base64.urlsafe_b64encode(raw)),
    ):
        forms[name] = encoded
        forms[f"{name} unpadded"] = encoded.rstrip(b"=")
    forms["url-encoded"] = quote(secret, safe="").encode()
    forms["form-encoded"] = quote_plus(secret).encode()
    return forms


def find_leaks(
    secrets: Mapping[str, str],
    surfaces: Iterable[tuple[str, bytes]],
    *,
    allowed: Mapping[str, set[str]] | None = None,
) -> list[str]:
    """Where each secret shows, as `"<secret> (<form>) in <surface>"`, by exact substring
    match on each encoded form; `allowed[secret name]` lists surfaces that may show it."""
    allowed = allowed or {}
    needles = [
        (name, form, value)
        for name, secret in secrets.items()
        for form, value in encoded_forms(secret).items()
    ]
    leaks: list[str] = []
    for where, data in surfaces:
        for name, form, value in needles:
            if value in data and where not in allowed.get(name, set()):
                leaks.append(f"{name} ({form}) in {where}")
    return sorted(set(leaks))


def assert_no_leaks(
    secrets: Mapping[str, str],
    surfaces: Iterable[tuple[str, bytes]],
    *,
    allowed: Mapping[str, set[str]] | None = None,
) -> None:
    leaks = find_leaks(secrets, surfaces, allowed=allowed)
    assert not leaks, "secrets leaked:\n  " + "\n  ".join(leaks)


def test_scanner_finds_a_planted_secret_in_any_form() -> None:
    secret = "sk-planted-0123456789"
    clean = ("clean response", b'{"ok": true, "prefix": "sk-planted"}')
    for form, value in encoded_forms(secret).items():
        planted = ("planted log line", b"token=" + value + b";")
        leaks = find_leaks({"planted key": secret}, [clean, planted])
        assert f"planted key ({form}) in planted log line" in leaks, (form, leaks)
        assert all(leak.endswith("in planted log line") for leak in leaks), leaks
    with pytest.raises(AssertionError, match=r"planted key \(raw\) in planted log line"):
        assert_no_leaks({"planted key": secret}, [clean, ("planted log line", secret.encode())])
    allowed = {"planted key": {"planted log line"}}
    assert find_leaks({"planted key": secret}, [("planted log line", b"sk-planted-0123456789")],
                      allowed=allowed) == []  # fmt: skip


_asked = iter(range(1_000_000))


def uncached(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with a prompt never asked before, so the answer cache cannot hide a fault."""
    return {**body, "messages": [{"role": "user", "content": f"question {next(_asked)}"}]}


# --- the recorded run ---------------------------------------------------------------------


class Recorder:
    """Makes calls to one gateway and keeps every answer, status line and headers included."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.surfaces: list[tuple[str, bytes]] = []
        self.count = 0

    async def call(
        self, method: str, path: str, *, key: str | None = None, **kwargs: Any
    ) -> tuple[int, bytes]:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        async with self.http.request(
            method, self.url + path, headers=headers, allow_redirects=False, **kwargs
        ) as response:
            body = await response.read()
            lines = [f"HTTP {response.status} {response.reason}"]
            lines += [f"{name}: {value}" for name, value in response.headers.items()]
        self.count += 1
        where = f"response #{self.count} to {method} {path} ({response.status})"
        self.surfaces.append((where, "\n".join(lines).encode() + b"\n\n" + body))
        return response.status, body

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        status, body = await self.call(method, path, **kwargs)
        assert 200 <= status < 300, (method, path, status, body[:500])
        return orjson.loads(body)


@asynccontextmanager
async def webhook_endpoint() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", received
    finally:
        await runner.cleanup()


def leak_test_config(sim_url: str, hook_url: str, db_path: Path) -> dict[str, Any]:
    config = gateway_config(sim_url)
    config["providers"].append(
        {"id": "second", "type": "anthropic", "base_url": sim_url, "api_key": SECOND_PROVIDER_KEY}
    )
    config["models"] += [
        {"name": "claude-model", "targets": [{"provider": "second", "model": "claude-sonnet-4-5"}]},
        {
            "name": "embed-model",
            "targets": [{"provider": "sim", "model": "text-embedding-3-small"}],
        },
    ]
    config["usage_store"] = {"url": f"sqlite:///{db_path}", "flush_interval_s": 0.05}
    config["cache"] = {}
    config["telemetry"] = {
        "log_events": {"enabled": True, "events": ["*"]},
        "webhooks": [
            {"url": hook_url, "secret": HOOK_SECRET, "events": ["*"], "flush_interval_s": 0.05}
        ],
    }
    config["resilience"] = {  # breakers stay closed: every fault reaches the provider
        "retry": {"base_delay_ms": 1, "max_delay_ms": 5},
        "circuit_breaker": {"failure_threshold": 1000},
    }
    return config


async def drive_model_routes(rec: Recorder, sim: RunningSimulator, created_key: str) -> None:
    """Model calls: successes, streams, upstream faults, and bad input of every kind."""
    chat = "/v1/chat/completions"
    for key in (USER_KEY, created_key):
        assert (await rec.call("POST", chat, key=key, json=CHAT))[0] == 200
        assert (await rec.call("POST", chat, key=key, json={**CHAT, "stream": True}))[0] == 200
    anthropic_headers = {"x-api-key": USER_KEY, "anthropic-version": "2023-06-01"}
    for body in (CLAUDE, {**CLAUDE, "stream": True}):
        assert (await rec.call("POST", "/v1/messages", headers=anthropic_headers, json=body))[
            0
        ] == 200
    assert (await rec.call("POST", chat, key=USER_KEY, json={**CHAT, "model": "claude-model"}))[
        0
    ] == 200
    embed = {"model": "embed-model", "input": "hello"}
    await rec.call("POST", "/v1/embeddings", key=USER_KEY, json=embed)
    await rec.call("GET", "/v1/models", key=USER_KEY)

    # Upstream faults, on both providers, streamed or not; the plain error bodies first, then
    # bodies that echo the provider keys back (a careless provider or proxy): a 400's message
    # is relayed to the client, so the gateway must scrub the keys out of it.
    faults: list[tuple[int, dict[str, Any] | None]] = [
        *itertools.product((400, 401, 500), (None, ECHOING_ERROR)),
    ]
    for status, error_body in faults:
        await set_faults(sim, {"kind": "status", "status": status, "body": error_body})
        asked: list[dict[str, Any]] = [
            CHAT,
            {**CHAT, "stream": True},
            {**CHAT, "model": "claude-model"},
        ]
        for body in asked:
            assert (await rec.call("POST", chat, key=USER_KEY, json=uncached(body)))[0] >= 400
        messages = uncached(CLAUDE)
        assert (await rec.call("POST", "/v1/messages", headers=anthropic_headers, json=messages))[
            0
        ] >= 400
        fallback = "/ai-orchestration/generate-with-fallback"
        await rec.call("POST", fallback, key=USER_KEY, json=uncached(CHAT))
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 1})
    await rec.call("POST", chat, key=USER_KEY, json=uncached({**CHAT, "stream": True}))
    await set_faults(sim, {"kind": "malformed"})
    assert (await rec.call("POST", chat, key=USER_KEY, json=uncached(CHAT)))[0] == 502
    await set_faults(sim)

    await rec.call("POST", "/ai-orchestration/generate", key=USER_KEY, json=CHAT)
    # Bad input and wrong keys, the secrets themselves offered as credentials among them.
    for bad_key in (UPSTREAM_KEY, SECOND_PROVIDER_KEY, MASTER_KEY, HOOK_SECRET, "sk-wrong-123"):
        assert (await rec.call("POST", chat, key=bad_key, json=CHAT))[0] in (401, 403)
        bad_headers = {"x-api-key": bad_key}
        assert (await rec.call("POST", "/v1/messages", headers=bad_headers, json=CLAUDE))[0] in (
            401,
            403,
        )
    assert (await rec.call("POST", chat, key=LIMITED_KEY, json=CHAT))[0] == 403
    assert (await rec.call("POST", chat, key=USER_KEY, data=b"{not json"))[0] == 400
    assert (await rec.call("POST", chat, key=USER_KEY, json={"messages": []}))[0] == 400
    assert (await rec.call("POST", chat, key=USER_KEY, json={**CHAT, "model": "nope"}))[0] == 404
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 70_000}]}
    assert (await rec.call("POST", chat, key=USER_KEY, json=big))[0] == 413
    assert (await rec.call("GET", chat, key=USER_KEY))[0] == 405
    assert (await rec.call("GET", "/v1/nowhere", key=USER_KEY))[0] == 404


async def drive_admin_routes(rec: Recorder, created_key_id: str) -> None:
    master = {"key": MASTER_KEY}
    for path in (
        "/ai-orchestration/health",
        "/ai-orchestration/healthy-providers",
        "/ai-orchestration/circuit-breakers",
        "/ai-orchestration/quotas/alice",
        "/ai-orchestration/rate-limits/alice",
        "/ai-orchestration/cache/stats",
        "/ai-orchestration/stats",
        "/ai-orchestration/monitoring/stats",
        "/admin/keys",
        f"/admin/keys/{created_key_id}",
        "/admin/users",
        "/admin/users/alice",
        "/admin/usage/status",
        "/admin/spend?group_by=key",
    ):
        await rec.json("GET", path, **master)
    for path in (
        "/ai-orchestration/circuit-breakers/sim/reset",
        "/ai-orchestration/quotas/alice/reset",
        "/ai-orchestration/rate-limits/alice/reset",
        "/ai-orchestration/cache/clear",
        "/admin/quotas/rebuild",
    ):
        await rec.call("POST", path, **master)
    warm = {"entries": [{"user": "alice", "model": "test-model", "messages": CHAT["messages"],
                         "response": "warm answer"}]}  # fmt: skip
    await rec.call("POST", "/ai-orchestration/cache/warm", json=warm, **master)
    await rec.json("PATCH", f"/admin/keys/{created_key_id}", json={"name": "renamed"}, **master)
    # Management routes refuse other keys, and the secrets offered as keys are not echoed.
    for key in (USER_KEY, UPSTREAM_KEY, "sk-wrong-123"):
        assert (await rec.call("GET", "/admin/keys", key=key))[0] in (401, 403)
        await rec.call("POST", "/ai-orchestration/monitoring/reset", key=key)
    for path in ("/metrics", "/openapi.json", "/docs", "/healthz", "/readyz"):
        await rec.call("GET", path)
    await rec.call("GET", "/metrics", key=USER_KEY)


async def drive_dashboard(rec: Recorder) -> None:
    assert (await rec.call("GET", "/dashboard?key=not-the-master-key"))[0] == 200
    assert (await rec.call("POST", "/dashboard/login", data={"key": UPSTREAM_KEY}))[0] == 200
    assert (await rec.call("GET", "/dashboard/data"))[0] == 401
    assert (await rec.call("GET", "/dashboard", params={"key": MASTER_KEY}))[0] in (302, 303)
    assert (await rec.call("GET", "/dashboard"))[0] == 200
    assert (await rec.call("GET", "/dashboard/data"))[0] == 200
    for name in ("app.js", "style.css"):
        await rec.call("GET", f"/dashboard/static/{name}")


async def usage_records(rec: Recorder, expected: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        page = await rec.json("GET", "/admin/usage?limit=1000", key=MASTER_KEY)
        if len(page["data"]) >= expected or time.monotonic() > deadline:
            return list(page["data"])
        await asyncio.sleep(0.05)


def log_surfaces(records: Iterable[logging.LogRecord]) -> list[tuple[str, bytes]]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    surfaces = []
    for i, record in enumerate(records):
        text = formatter.format(record) + "\n" + repr(vars(record))
        surfaces.append((f"log record #{i} ({record.name}: {record.msg!r:.80})", text.encode()))
    return surfaces


def event_surfaces(events: Iterable[Event]) -> list[tuple[str, bytes]]:
    return [
        (
            f"event #{i} ({event.name})",
            repr(event).encode() + msgspec.json.encode(event),
        )
        for i, event in enumerate(events)
    ]


def database_surfaces(db_path: Path) -> list[tuple[str, bytes]]:
    files = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
    return [(f"database file {p.name}", p.read_bytes()) for p in files]


async def test_no_secret_shows_on_any_surface(
    sim: RunningSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db_path = tmp_path / "usage.db"
    events: list[Event] = []
    jar = aiohttp.CookieJar(unsafe=True)  # the dashboard cookie, on 127.0.0.1
    async with (
        webhook_endpoint() as (hook_url, deliveries),
        aiohttp.ClientSession(cookie_jar=jar) as http,
    ):
        app = create_app(check_config(leak_test_config(sim.url, hook_url, db_path)))
        app[RUNTIME].events.subscribe_all(events.append)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            rec = Recorder(http, f"http://127.0.0.1:{runner.addresses[0][1]}")
            created = await rec.json(
                "POST", "/admin/keys", key=MASTER_KEY, json={"user": "carol", "name": "ci"}
            )
            created_key, created_id = created["key"], created["key_id"]
            created_surface = rec.surfaces[-1][0]

            await drive_model_routes(rec, sim, created_key)
            await drive_admin_routes(rec, created_id)
            await drive_dashboard(rec)
            records = await usage_records(rec, expected=20)
            await rec.call("GET", "/admin/usage?format=csv", key=MASTER_KEY)
            listing = await rec.json("GET", "/admin/keys?include_revoked=true", key=MASTER_KEY)
            await rec.json("DELETE", f"/admin/keys/{created_id}", key=MASTER_KEY)
            assert (await rec.call("POST", "/v1/chat/completions", key=created_key, json=CHAT))[
                0
            ] == 401
        finally:
            await runner.cleanup()  # flushes the sinks and the usage writer

    # The capture saw something on every surface: a silent surface would prove nothing.
    assert len(records) >= 20, len(records)
    assert {200, 502} <= {r["status"] for r in records}, records
    assert any(r.name == "stellara.events" for r in caplog.records), "no event log line"
    names = {e.name for e in events}
    assert {"request.completed", "request.failed"} <= names, names
    assert deliveries, "the webhook received nothing"

    # Admin listings show the created key by its prefix only.
    shown = [k for k in listing["data"] if k["key_id"] == created_id]
    assert shown, listing
    assert "key" not in shown[0], shown
    assert created_key.startswith(shown[0]["prefix"]), shown
    assert len(shown[0]["prefix"]) < len(created_key) // 2, shown

    # Webhook batches are signed with the secret; the signature is derived, never the secret.
    for headers, body in deliveries:
        signature = headers["X-Stellara-Signature"]
        signed = headers["X-Stellara-Timestamp"].encode() + b"." + body
        expected = hmac.new(HOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
        assert signature == f"sha256={expected}"
        json.loads(body)

    secrets = {
        "provider key": UPSTREAM_KEY,
        "second provider key": SECOND_PROVIDER_KEY,
        "master key": MASTER_KEY,
        "static virtual key (alice)": USER_KEY,
        "static virtual key (bob)": LIMITED_KEY,
        "created virtual key": created_key,
        "webhook secret": HOOK_SECRET,
    }
    surfaces = [
        *rec.surfaces,
        *log_surfaces(caplog.records),
        *event_surfaces(events),
        *[
            (f"webhook delivery #{i}", repr(headers).encode() + b"\n" + body)
            for i, (headers, body) in enumerate(deliveries)
        ],
        *database_surfaces(db_path),
    ]
    # The create answer is the one place the new key is shown, by design.
    assert_no_leaks(secrets, surfaces, allowed={"created virtual key": {created_surface}})


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(
            {"keys": [{"key": USER_KEY, "user": "a"}, {"key": USER_KEY, "user": "b"}]},
            id="duplicate-key",
        ),
        pytest.param({"keys": [{"key": USER_KEY, "user": 5}]}, id="key-with-bad-user"),
        pytest.param({"server": {"master_key": {"v": MASTER_KEY}}}, id="master-key-not-text"),
        pytest.param(
            {"providers": [{"id": "p", "type": "openai", "api_key": [UPSTREAM_KEY]}]},
            id="provider-key-not-text",
        ),
        pytest.param(
            {"providers": [{"id": "p", "type": "bogus", "api_key": UPSTREAM_KEY}]},
            id="unknown-provider-type",
        ),
        pytest.param(
            {"telemetry": {"webhooks": [{"url": "ftp://x", "secret": HOOK_SECRET, "bad": 1}]}},
            id="bad-webhook",
        ),
        pytest.param({"unknown": UPSTREAM_KEY}, id="unknown-section"),
    ],
)
def test_config_errors_do_not_echo_secrets(broken: dict[str, Any]) -> None:
    config = {**gateway_config("http://127.0.0.1:9"), **broken}
    with pytest.raises(ConfigError) as raised:
        check_config(config)
    secrets = {
        "provider key": UPSTREAM_KEY,
        "master key": MASTER_KEY,
        "virtual key": USER_KEY,
        "webhook secret": HOOK_SECRET,
    }
    text = f"{raised.value}\n{raised.value!r}\n{raised.value.args!r}"
    assert_no_leaks(secrets, [(f"ConfigError {text[:120]!r}", text.encode())])
