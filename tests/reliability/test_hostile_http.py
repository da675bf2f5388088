"""Hostile HTTP against a real gateway: malformed, huge, deep, slow and idle clients are
refused or cut off in bounded time and memory, and a well-behaved client is served meanwhile.

In-process cases use `start_gateway`; the connection-level ones (slow headers, idle
connections) run the gateway through `serve()`, the way `stellara serve` runs it, because the
keep-alive timer that bounds them is set there."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from stellara.assembly.config import check_config
from stellara.server.serve import serve
from stellara.sim import RunningSimulator
from tests.conftest import MASTER_KEY, USER_KEY, StartGateway, gateway_config

CHAT = "/v1/chat/completions"
SMALL = b'{"model":"test-model","messages":[{"role":"user","content":"hi"}]}'
MIB = 1024 * 1024


def rss_bytes() -> int:
    """This process's resident set size (the in-process gateway's memory included)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def chat_request(body: bytes, extra_headers: bytes = b"", key: bytes = USER_KEY.encode()) -> bytes:
    return (
        b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: gateway\r\n"
        b"Authorization: Bearer " + key + b"\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\n" + extra_headers + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


async def exchange(port: int, data: bytes, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """Send `data` on a fresh connection; the answer's status and body (read to EOF)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def assert_openai_error(body: bytes, status: int) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error", (status, error)
    return error


async def timed_normal_request(port: int) -> float:
    """A well-behaved client's request: it must succeed; how long it took."""
    started = time.monotonic()
    status, body = await exchange(port, chat_request(SMALL))
    assert status == 200, body
    return time.monotonic() - started


async def start(start_gateway: StartGateway, sim: RunningSimulator, **server: Any) -> int:
    raw = gateway_config(sim.url)
    raw["server"] = {**raw["server"], "max_body_bytes": MIB, **server}
    gateway = await start_gateway(raw)
    return int(gateway.url.rsplit(":", 1)[1])


@asynccontextmanager
async def served(sim: RunningSimulator, **server: Any) -> AsyncIterator[int]:
    """The gateway run by `serve()` (as `stellara serve` runs it) on a free port."""
    raw = gateway_config(sim.url)
    raw["server"] = {**raw["server"], "max_body_bytes": MIB, **server}
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[int] = loop.create_future()
    task = asyncio.create_task(
        serve(check_config(raw), host="127.0.0.1", port=0, on_ready=ready.set_result)
    )
    try:
        yield await asyncio.wait_for(ready, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(b"X-Big: " + b"a" * 20_000 + b"\r\n", id="one-20k-header"),
        pytest.param(b"".join(b"X-H%d: 1\r\n" % i for i in range(1_000)), id="1000-headers"),
    ],
)
async def test_oversized_or_too_many_headers_are_refused_not_crashed(
    sim: RunningSimulator, start_gateway: StartGateway, extra: bytes
) -> None:
    port = await start(start_gateway, sim)
    status, _ = await exchange(port, chat_request(SMALL, extra))
    assert status in (400, 431)
    assert await timed_normal_request(port) < 2.0


@pytest.mark.parametrize(
    "template",
    [
        pytest.param(
            b'{"model":"test-model","messages":[{"role":"user","content":%s}]}', id="content"
        ),
        pytest.param(
            b'{"model":"test-model","messages":[{"role":"user","content":"hi"}],"tools":'
            b'[{"type":"function","function":{"name":"f","parameters":{"p":%s}}}]}',
            id="tool-parameters",
        ),
        pytest.param(
            b'{"model":"test-model","messages":[{"role":"user","content":"hi"}],"x":%s}',
            id="unknown-field",
        ),
    ],
)
async def test_deeply_nested_json_is_a_400_in_bounded_time(
    sim: RunningSimulator, start_gateway: StartGateway, template: bytes
) -> None:
    port = await start(start_gateway, sim)
    depth = 100_000
    body = template % (b"[" * depth + b"]" * depth)
    started = time.monotonic()
    status, answer = await exchange(port, chat_request(body))
    assert time.monotonic() - started < 2.0
    assert status == 400, answer
    assert_openai_error(answer, status)
    assert await timed_normal_request(port) < 2.0


async def test_twenty_thousand_messages_are_answered_while_others_are_served(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    port = await start(start_gateway, sim)
    messages = [{"role": "user", "content": "x"}] * 20_000
    body = json.dumps({"model": "test-model", "messages": messages}).encode()
    assert len(body) < MIB
    before = rss_bytes()
    started = time.monotonic()
    big = [asyncio.create_task(exchange(port, chat_request(body))) for _ in range(3)]
    others = await asyncio.gather(*(timed_normal_request(port) for _ in range(5)))
    results = await asyncio.gather(*big)
    assert time.monotonic() - started < 5.0
    assert max(others) < 2.0
    for status, answer in results:
        assert status == 200, answer
    assert rss_bytes() - before < 200 * MIB


async def test_invalid_utf8_body_is_a_400_with_an_openai_error(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    port = await start(start_gateway, sim)
    body = b'{"model":"test-model","messages":[{"role":"user","content":"\xff\xfe"}]}'
    status, answer = await exchange(port, chat_request(body))
    assert status == 400
    assert "UTF-8" in assert_openai_error(answer, status)["message"]


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        pytest.param(b"X-Session-Id: s\xff\xfe\r\n", USER_KEY.encode(), id="session-id"),
        pytest.param(b"X-Anything: \xc3\x28\r\n", USER_KEY.encode(), id="other-header"),
        pytest.param(b"", b"sk-\xff\xfe", id="authorization"),
    ],
)
async def test_invalid_utf8_header_value_is_a_400_with_an_openai_error(
    sim: RunningSimulator, start_gateway: StartGateway, extra: bytes, key: bytes
) -> None:
    port = await start(start_gateway, sim)
    status, answer = await exchange(port, chat_request(SMALL, extra, key))
    assert status == 400, answer
    assert "UTF-8" in assert_openai_error(answer, status)["message"]
    assert await timed_normal_request(port) < 2.0


async def test_invalid_utf8_x_api_key_is_a_400(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    port = await start(start_gateway, sim)
    request = chat_request(SMALL).replace(b"Authorization: Bearer", b"x-api-key:", 1)
    status, _ = await exchange(port, request.replace(USER_KEY.encode(), b"\xff"))
    assert status == 400


async def test_body_trickled_slowly_is_cut_off_with_408(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    port = await start(start_gateway, sim, body_read_timeout_s=1.0)
    head = chat_request(SMALL)[: -len(SMALL)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        answer = asyncio.create_task(reader.readuntil(b"\r\n\r\n"))
        started = time.monotonic()
        for byte in SMALL:  # a byte every 0.2 s: the whole body would take ~13 s
            if answer.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.wait([answer], timeout=0.2)
        status_line = (await asyncio.wait_for(answer, 1.0)).split(b"\r\n", 1)[0]
        elapsed = time.monotonic() - started
    finally:
        writer.close()
    assert status_line.split(b" ")[1] == b"408"
    assert 0.9 < elapsed < 2.5
    assert await timed_normal_request(port) < 2.0


async def test_headers_trickled_slowly_are_cut_off_by_serve(sim: RunningSimulator) -> None:
    async with served(sim, keepalive_timeout_s=1.0) as port:
        request = chat_request(SMALL)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        closed = asyncio.create_task(reader.read())
        started = time.monotonic()
        try:
            for byte in request[:40]:  # a byte every 0.1 s: the headers would take ~20 s
                if closed.done():
                    break
                writer.write(bytes([byte]))
                await asyncio.wait([closed], timeout=0.1)
            assert await asyncio.wait_for(closed, 2.0) == b""  # closed, nothing answered
        finally:
            writer.close()
        assert time.monotonic() - started < 2.5
        assert await timed_normal_request(port) < 2.0


async def test_many_idle_connections_do_not_starve_others_and_are_closed(
    sim: RunningSimulator,
) -> None:
    async with served(sim, keepalive_timeout_s=1.0) as port:
        after_round = []
        for _ in range(2):  # the first round also pays serve()'s tokenizer preload (~50 MB)
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(500)]
            try:
                assert await timed_normal_request(port) < 1.0
                started = time.monotonic()
                ends = await asyncio.wait_for(
                    asyncio.gather(*(reader.read() for reader, _ in idle)), 5.0
                )
                assert ends == [b""] * len(idle)  # each closed by the server
                assert time.monotonic() - started < 3.0
            finally:
                for _, writer in idle:
                    writer.close()
            after_round.append(rss_bytes())
        assert after_round[1] - after_round[0] < 20 * MIB
        assert await timed_normal_request(port) < 1.0


async def test_a_keep_alive_connection_left_idle_is_closed_by_serve(
    sim: RunningSimulator,
) -> None:
    async with served(sim, keepalive_timeout_s=1.0) as port, aiohttp.ClientSession() as http:
        # A raw keep-alive request, then silence: the server must close after the timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(chat_request(SMALL).replace(b"Connection: close", b"X-Keep: 1", 1))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 3.0) == b""
            assert 0.5 < time.monotonic() - started < 2.5
        finally:
            writer.close()
        async with http.post(
            f"http://127.0.0.1:{port}{CHAT}",
            data=SMALL,
            headers={"Authorization": f"Bearer {USER_KEY}"},
        ) as response:
            assert response.status == 200


async def test_admin_bodies_get_the_same_limits_as_model_calls(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    """The cache management routes read their bodies with the same size limit and depth
    guard as the model routes: 413 and 400, never a 500."""
    gateway = await start_gateway(gateway_config(sim.url, cache={}))
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
    too_big = (
        b'{"entries": ['
        + b'{"user": "u", "model": "m", "messages": [], "response": "x"},' * 5000
        + b"]}"
    )
    nested = (
        b'{"entries": [{"user": "u", "model": "m", "messages": [], "response": '
        + b"[" * 30_000
        + b"]}]}"
    )
    async with aiohttp.ClientSession() as http:
        for body, want in ((too_big, 413), (nested, 400)):
            url = f"{gateway.url}/ai-orchestration/cache/warm"
            async with http.post(url, data=body, headers=headers) as response:
                assert response.status == want
                assert (await response.json())["error"]["type"] == "invalid_request_error"
