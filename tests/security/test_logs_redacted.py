"""No key reaches a log line with the access log on: the documented sign-in link
`/dashboard?key=<master key>`, a virtual key sent as `?key=`, a Referer quoting the sign-in
link, and a request line too long for the parser (aiohttp logs its error quoting the line) are
all written without the key, by the access logger and by every other logger, while the access
log still says what was asked."""

from __future__ import annotations

import logging
from urllib.parse import quote

import aiohttp
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import LIMITED_KEY, MASTER_KEY, UPSTREAM_KEY, USER_KEY
from tests.reliability.test_hostile_http import SMALL, exchange, served
from tests.security.test_secrets_never_leak import assert_no_leaks, log_surfaces

pytestmark = pytest.mark.e2e

MAX_HEADER_BYTES = 4096


async def test_no_key_reaches_any_log_line_with_the_access_log_on(
    sim: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = {"access_log": True, "max_header_bytes": MAX_HEADER_BYTES}
    async with served(sim, **config) as port, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}"
        master = {"Authorization": f"Bearer {MASTER_KEY}"}
        async with http.post(f"{url}/admin/keys", json={"user": "carol"}, headers=master) as r:
            assert r.status == 201, await r.text()
            created = (await r.json())["key"]
        async with http.get(f"{url}/dashboard?key={MASTER_KEY}", allow_redirects=False) as r:
            assert r.status == 303
        referer = {"Referer": f"{url}/dashboard?key={MASTER_KEY}"}
        async with http.get(f"{url}/dashboard", headers=referer) as r:
            assert r.status == 200
        for key in (created, USER_KEY):
            async with http.post(
                f"{url}/v1/chat/completions?key={quote(key)}",
                data=SMALL,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            ) as r:
                assert r.status == 200, await r.text()
        # Longer than the parser takes: aiohttp answers 400 and logs the error with the line.
        too_long = f"/v1/models?key={MASTER_KEY}&pad={'x' * MAX_HEADER_BYTES}"
        status, _ = await exchange(port, f"GET {too_long} HTTP/1.1\r\nHost: g\r\n\r\n".encode())
        assert status == 400

    secrets = {
        "master key": MASTER_KEY,
        "created virtual key": created,
        "static virtual key": USER_KEY,
        "other static key": LIMITED_KEY,
        "provider key": UPSTREAM_KEY,
    }
    surfaces = [*log_surfaces(caplog.records), ("the captured log text", caplog.text.encode())]
    assert_no_leaks(secrets, surfaces)

    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any('"GET /dashboard?key=[redacted] HTTP/1.1" 303' in line for line in access), access
    assert any("/v1/chat/completions?key=[redacted] HTTP/1.1" in line for line in access)
    assert any(f'"{url}/dashboard?key=[redacted]"' in line for line in access), access
    parser_errors = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert parser_errors, "the parser's error was not logged"
    assert all("[redacted]" in (r.exc_text or "") for r in parser_errors)
