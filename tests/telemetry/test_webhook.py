"""Webhook sink against real HTTP servers: signed batches, batching triggers, retries with
backoff and Retry-After, drops when refused or overflowing, dead endpoints, credentials."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from stellara.config.models import WebhookConfig
from stellara.events import EventBus
from stellara.telemetry.sinks.webhook import WebhookClient, WebhookSink
from stellara.testing import ManualClock
from tests.store.test_usage_writer import PROMPT, failed

START = 1_767_225_600.0
SECRET = "s3cret-value"


@dataclass
class Received:
    headers: CIMultiDictProxy[str]
    body: bytes
    at: float  # time.monotonic()

    @property
    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = json.loads(self.body)
        return events


@dataclass
class Receiver:
    """A webhook endpoint answering from a script (then 200), recording every POST."""

    url: str = ""
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.headers, await request.read(), time.monotonic()))
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return web.Response(status=status, headers=headers, text="ok")

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> None:
        await eventually(lambda: len(self.received) >= count, timeout_s)


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the sink and server have no event to wait on
            await asyncio.sleep(0.005)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield receiver
    await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    client = WebhookClient()
    yield client
    await client.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def make_sink(
    url: str, client: WebhookClient, clock: ManualClock, bus: EventBus, **config: Any
) -> WebhookSink:
    settings = {"flush_interval_s": 0.02, "max_retries": 3, **config}
    sink = WebhookSink(
        WebhookConfig(url=url, **settings),
        client,
        clock=clock,
        retry_first_s=0.01,
        retry_max_s=0.05,
        jitter=lambda: 0.0,
    )
    sink.attach(bus)
    return sink


def publish(bus: EventBus, count: int) -> None:
    """`count` failed requests numbered by their id, each with content and a message that
    echoes the prompt."""
    for i in range(count):
        bus.publish(failed(str(i), prompt=PROMPT, message=f"upstream said: {PROMPT}"))


def numbers(received: Received) -> list[int]:
    return [int(e["data"]["request_id"]) for e in received.events]


def assert_signed(received: Received, secret: str = SECRET) -> None:
    timestamp = received.headers["X-Stellara-Timestamp"]
    signed = timestamp.encode() + b"." + received.body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert received.headers["X-Stellara-Signature"] == f"sha256={digest}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_webhook_posts_signed_batches_of_batch_max(receiver, client, clock):
    bus = EventBus()
    headers = {"X-Team": "ops", "Content-Type": "text/plain"}
    sink = make_sink(receiver.url, client, clock, bus, secret=SECRET, batch_max=3, headers=headers)
    publish(bus, 7)
    sink.start()
    await receiver.wait_for(3)
    await sink.close(1.0)

    assert [len(r.events) for r in receiver.received] == [3, 3, 1]
    assert [n for r in receiver.received for n in numbers(r)] == list(range(7))
    first = receiver.received[0]
    event = first.events[0]
    assert list(event) == ["event", "at", "data"]
    assert (event["event"], event["at"]) == ("request.failed", "2026-01-01T00:00:00.000Z")
    assert event["data"]["error"] == "upstream_unavailable"
    assert not {"message", "prompt", "completion"} & event["data"].keys()
    assert PROMPT.encode() not in first.body  # content and messages may echo the prompt
    for received in receiver.received:
        assert_signed(received)
        assert received.headers["X-Stellara-Timestamp"] == str(int(START))
        assert received.headers["Content-Type"] == "application/json"
        assert received.headers["User-Agent"] == "stellara"
        assert received.headers["X-Team"] == "ops"
    assert sink.status() == {
        "url": receiver.url,
        "pending": 0,
        "delivered": 7,
        "dropped": 0,
        "failed_attempts": 0,
        "last_error": None,
    }


async def test_webhook_without_secret_sends_no_signature(receiver, client, clock):
    bus = EventBus()
    sink = make_sink(receiver.url, client, clock, bus)
    sink.start()
    publish(bus, 1)
    await receiver.wait_for(1)
    await sink.close(1.0)
    assert "X-Stellara-Signature" not in receiver.received[0].headers
    assert receiver.received[0].headers["X-Stellara-Timestamp"] == str(int(START))


async def test_webhook_waits_flush_interval_for_a_partial_batch(receiver, client, clock):
    bus = EventBus()
    sink = make_sink(receiver.url, client, clock, bus, batch_max=100, flush_interval_s=0.3)
    sink.start()
    published_at = time.monotonic()
    publish(bus, 1)
    await receiver.wait_for(1)
    assert 0.2 <= receiver.received[0].at - published_at < 1.0
    await sink.close(1.0)


async def test_webhook_sends_a_full_batch_without_waiting_the_interval(receiver, client, clock):
    bus = EventBus()
    sink = make_sink(receiver.url, client, clock, bus, batch_max=2, flush_interval_s=30)
    sink.start()
    await asyncio.sleep(0.01)  # the task is waiting out its 30 s interval
    published_at = time.monotonic()
    publish(bus, 2)
    await receiver.wait_for(1)
    assert receiver.received[0].at - published_at < 1.0
    await sink.close(1.0)


async def test_webhook_retries_5xx_until_delivered_with_fresh_signatures(receiver, client, clock):
    receiver.answers = [(500, {}), (502, {})]
    bus = EventBus()
    sink = make_sink(receiver.url, client, clock, bus, secret=SECRET)
    sink.start()
    publish(bus, 2)
    await receiver.wait_for(3)
    await sink.close(1.0)
    bodies = {r.body for r in receiver.received}
    assert len(receiver.received) == 3
    assert len(bodies) == 1  # the same batch each time
    for received in receiver.received:
        assert_signed(received)
    status = sink.status()
    assert (status["delivered"], status["dropped"], status["failed_attempts"]) == (2, 0, 2)


async def test_webhook_honours_retry_after_seconds_and_dates(receiver, client, clock):
    receiver.answers = [
        (429, {"Retry-After": "1"}),
        (503, {"Retry-After": formatdate(START + 1, usegmt=True)}),  # the clock says START
    ]
    bus = EventBus()
    sink = make_sink(receiver.url, client, clock, bus)
    sink.start()
    publish(bus, 1)
    await receiver.wait_for(3, timeout_s=5)
    await sink.close(1.0)
    first, second, third = (r.at for r in receiver.received)
    # without Retry-After the backoff here is 10-20 ms
    assert second - first >= 0.95
    assert third - second >= 0.95
    assert sink.status()["delivered"] == 1


async def test_webhook_drops_a_batch_after_max_retries_and_goes_on(receiver, client, clock):
    receiver.answers = [(503, {})] * 3
    bus = EventBus()
    sink = make_sink(receiver.url, client, clock, bus, max_retries=2, batch_max=2)
    publish(bus, 2)
    sink.start()
    await receiver.wait_for(3)
    publish(bus, 1)  # the next batch finds the endpoint back
    await receiver.wait_for(4)
    await sink.close(1.0)
    status = sink.status()
    assert (status["delivered"], status["dropped"], status["failed_attempts"]) == (1, 2, 3)
    assert status["last_error"] == "HTTP 503"
    assert numbers(receiver.received[3]) == [0]


async def test_webhook_drops_refused_batches_at_once_and_warns_once(
    receiver, client, clock, caplog
):
    caplog.set_level(logging.WARNING, logger="stellara.telemetry.sinks.webhook")
    receiver.answers = [(400, {}), (404, {})]
    bus = EventBus()
    sink = make_sink(receiver.url, client, clock, bus, batch_max=1)
    publish(bus, 2)
    sink.start()
    await receiver.wait_for(2)
    await sink.close(1.0)
    assert len(receiver.received) == 2  # no retries
    status = sink.status()
    assert (status["delivered"], status["dropped"], status["failed_attempts"]) == (0, 2, 2)
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


async def test_webhook_queue_overflow_drops_the_oldest_and_counts(receiver, client, clock):
    bus = EventBus()
    sink = make_sink(receiver.url, client, clock, bus, queue_max=5, batch_max=100)
    publish(bus, 12)
    assert sink.pending == 5
    sink.start()
    await receiver.wait_for(1)
    await sink.close(1.0)
    assert numbers(receiver.received[0]) == [7, 8, 9, 10, 11]
    status = sink.status()
    assert (status["delivered"], status["dropped"], status["pending"]) == (5, 7, 0)


async def test_webhook_close_flushes_without_waiting_the_interval(receiver, client, clock):
    bus = EventBus()
    sink = make_sink(receiver.url, client, clock, bus, flush_interval_s=30)
    sink.start()
    publish(bus, 3)
    started = time.monotonic()
    await sink.close(2.0)
    assert time.monotonic() - started < 1.0
    assert [len(r.events) for r in receiver.received] == [3]


async def test_webhook_retries_refused_connections_then_drops(client, clock):
    bus = EventBus()
    sink = make_sink(f"http://127.0.0.1:{closed_port()}/hook", client, clock, bus, max_retries=2)
    sink.start()
    publish(bus, 4)
    await eventually(lambda: sink.status()["dropped"] >= 4)
    await sink.close(1.0)
    status = sink.status()
    assert (status["delivered"], status["failed_attempts"]) == (0, 3)
    assert status["last_error"].startswith("ClientConnectorError")


async def test_webhook_times_out_an_endpoint_that_never_answers(client, clock):
    held: list[asyncio.StreamWriter] = []

    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepted, read, never answered

    server = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus = EventBus()
    sink = make_sink(f"http://127.0.0.1:{port}/hook", client, clock, bus, timeout_s=0.2)
    try:
        sink.start()
        publish(bus, 1)
        await eventually(lambda: sink.status()["failed_attempts"] >= 2)
        assert sink.status()["last_error"] == "no answer within 0.2 s"
        started = time.monotonic()
        await sink.close(0.3)  # still retrying: close gives up on time
        assert time.monotonic() - started < 1.0
        assert sink.status()["pending"] == 0
        assert sink.status()["dropped"] == 1
    finally:
        for writer in held:
            writer.close()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


async def test_webhook_never_logs_url_credentials_or_secret(receiver, client, clock, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.answers = [(500, {})] * 2
    bus = EventBus()
    url = receiver.url.replace("http://", "http://user:pa55word@") + "?token=tok3n"
    sink = make_sink(url, client, clock, bus, secret=SECRET, max_retries=1)
    sink.start()
    publish(bus, 1)
    await receiver.wait_for(2)
    await sink.close(1.0)
    basic = base64.b64encode(b"user:pa55word").decode()
    assert receiver.received[0].headers["Authorization"] == f"Basic {basic}"
    assert sink.status()["url"] == receiver.url
    assert sink.status()["dropped"] == 1
    assert caplog.records, "the failures were logged"
    for secret in ("pa55word", "tok3n", SECRET):
        assert secret not in caplog.text
        assert secret not in repr(sink.status())
