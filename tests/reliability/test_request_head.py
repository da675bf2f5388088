"""A request's head (line and headers) is bounded in size on every route and, under `serve()`,
in time: headers over `server.max_header_bytes` together get 431 in the route's dialect, the
parser refuses any single line over it before the app sees it, and a connection whose head
has not all arrived `server.header_read_timeout_s` after its first byte is closed, while a
client that pauses between requests or sends its body slowly is served."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import MASTER_KEY, USER_KEY, StartGateway, gateway_config
from tests.reliability.test_hostile_http import SMALL, chat_request, exchange, served

MAX_HEADER_BYTES = 4096
# Three headers of 1,500 bytes: each within every per-line limit, together over the cap.
BULKY = {f"X-Bulk-{i}": "b" * 1500 for i in range(3)}


@pytest.mark.parametrize(
    ("method", "path", "key", "dialect"),
    [
        pytest.param("POST", "/v1/chat/completions", USER_KEY, "openai", id="openai-route"),
        pytest.param("POST", "/v1/messages", USER_KEY, "anthropic", id="anthropic-route"),
        pytest.param("GET", "/admin/keys", MASTER_KEY, "openai", id="admin-route"),
        pytest.param("GET", "/nowhere", None, "openai", id="unknown-route"),
    ],
)
async def test_headers_over_the_cap_together_get_431_in_the_route_dialect(
    sim: RunningSimulator,
    start_gateway: StartGateway,
    method: str,
    path: str,
    key: str | None,
    dialect: str,
) -> None:
    raw = gateway_config(sim.url)
    raw["server"] = {**raw["server"], "max_header_bytes": MAX_HEADER_BYTES}
    gateway = await start_gateway(raw)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, gateway.url + path, headers=headers | BULKY) as response:
            body = await response.json()
            assert response.status == 431, body
            assert response.reason == "Request Header Fields Too Large"
            assert response.headers["x-stellara-request-id"].startswith("req_")
        if dialect == "anthropic":
            assert body["type"] == "error"
            assert body["error"]["type"] == "invalid_request_error"
        else:
            assert body["error"]["code"] == "request_header_fields_too_large"
        assert str(MAX_HEADER_BYTES) in json.dumps(body)
        fewer = dict(list(BULKY.items())[:2])  # 3,000 bytes and the usual headers: under
        async with http.get(f"{gateway.url}/v1/models", headers=headers | fewer) as response:
            assert response.status in (200, 401)


async def test_serve_has_the_parser_refuse_a_line_longer_than_the_cap(
    sim: RunningSimulator,
) -> None:
    one_big = b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 100) + b"\r\n"
    long_url = b"GET /v1/models?pad=" + b"x" * (MAX_HEADER_BYTES + 100) + b" HTTP/1.1\r\n\r\n"
    async with served(sim, max_header_bytes=MAX_HEADER_BYTES) as port:
        # aiohttp's own limit (8,190 bytes a line) would have let both through to the app.
        status, body = await exchange(port, chat_request(SMALL, one_big))
        assert status == 400, body
        assert (await exchange(port, long_url))[0] == 400
        assert (await exchange(port, chat_request(SMALL)))[0] == 200
    async with served(sim, max_header_bytes=64 * 1024) as port:
        # …and would have refused this one, which a larger cap lets through.
        twenty_k = b"X-Big: " + b"a" * 20_000 + b"\r\n"
        assert (await exchange(port, chat_request(SMALL, twenty_k)))[0] == 200


async def test_headers_trickled_slower_than_the_head_deadline_are_cut_off(
    sim: RunningSimulator,
) -> None:
    # Keep-alive stays at its 75 s default: only the head deadline can close this connection.
    async with served(sim, header_read_timeout_s=1.0) as port:
        request = chat_request(SMALL)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        closed = asyncio.create_task(reader.read())
        try:
            await asyncio.sleep(1.5)  # idle before any byte: keep-alive time, not the head's
            assert not closed.done()
            started = time.monotonic()
            for byte in request[:40]:  # a byte every 0.2 s: the head would take over a minute
                if closed.done():
                    break
                writer.write(bytes([byte]))
                await asyncio.wait([closed], timeout=0.2)
            assert await asyncio.wait_for(closed, 2.0) == b""  # closed, nothing answered
        finally:
            writer.close()
        assert 0.9 < time.monotonic() - started < 2.0
        assert (await exchange(port, chat_request(SMALL)))[0] == 200


async def test_head_deadline_spares_pauses_between_requests_and_slow_bodies(
    sim: RunningSimulator,
) -> None:
    keep_alive = chat_request(SMALL).replace(b"Connection: close", b"X-Keep: 1", 1)
    head, body = keep_alive[: -len(SMALL)], SMALL
    async with served(sim, header_read_timeout_s=1.0) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for pause_s in (0.0, 1.5):  # idle longer than the deadline between requests
                await asyncio.sleep(pause_s)
                writer.write(keep_alive)
                assert await read_answer_status(reader) == 200
            writer.write(head[:20])  # a head in two pieces, well within the deadline
            await asyncio.sleep(0.5)
            writer.write(head[20:])
            for piece in (body[:10], body[10:40], body[40:]):  # a body over 1.5 s
                await asyncio.sleep(0.5)
                writer.write(piece)
            assert await read_answer_status(reader) == 200
        finally:
            writer.close()


async def read_answer_status(reader: asyncio.StreamReader) -> int:
    """The status of the next answer on a keep-alive connection, its body read."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])
