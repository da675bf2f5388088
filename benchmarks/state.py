"""State-backend benchmark: what one request's limits cost on memory and on Redis (loopback).

Each request is what the gateway does: `admit` with five limits (requests, tokens and burst
windows, a daily cost quota, a session quota), then `settle` with the actual usage. Prints
p50/p99 of admit, settle and the pair, one request after another; requests/s with many in
flight; and, for Redis, the commands sent per request, counted by a proxy on the wire.

Usage::

    .venv/bin/python benchmarks/state.py                       # Redis from STELLARA_TEST_REDIS_URL
    .venv/bin/python benchmarks/state.py --requests 20000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit

from redis.asyncio import Redis

from stellara.state.base import Amounts, Limit, PeriodLimit, WindowLimit
from stellara.state.memory import MemoryBackend
from stellara.state.redis import RedisBackend

SCOPES = 100  # users the requests rotate over, so no window grows past requests / SCOPES
AMOUNTS: Amounts = {"requests": 1.0, "tokens": 800.0, "cost_usd": 0.002}
ACTUAL: Amounts = {"requests": 1.0, "tokens": 350.0, "cost_usd": 0.0009}


def limits_for(request: int) -> list[Limit]:
    return [
        WindowLimit("rate:requests", "requests", 60.0, 1e9),
        WindowLimit("rate:tokens", "tokens", 60.0, 1e12),
        WindowLimit("burst:requests", "requests", 1.0, 1e9),
        PeriodLimit("quota:daily", "cost_usd", "daily", 1e9, utc_offset_s=3_600),
        PeriodLimit(
            "quota:session", "tokens", "session", 1e12, session_id=f"s{request % 7}", idle_s=600
        ),
    ]


async def one_request(backend: MemoryBackend | RedisBackend, i: int) -> tuple[float, float]:
    """Seconds taken by admit and by settle."""
    scope, limits, reservation = f"user{i % SCOPES}", limits_for(i), f"req-{i}"
    started = time.perf_counter()
    admission = await backend.limits.admit(scope, limits, AMOUNTS, reservation)
    admitted = time.perf_counter()
    assert admission.admitted, admission
    await backend.limits.settle(scope, limits, reservation, ACTUAL)
    return admitted - started, time.perf_counter() - admitted


def percentiles(samples: Sequence[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1e6:8.1f} µs   p99 {cuts[98] * 1e6:8.1f} µs"


async def measure(
    name: str, backend: MemoryBackend | RedisBackend, args: argparse.Namespace
) -> None:
    for i in range(200):  # warm-up: connections, scripts, code paths
        await one_request(backend, -i - 1)
    admits, settles, pairs = [], [], []
    for i in range(args.requests):
        admit_s, settle_s = await one_request(backend, i)
        admits.append(admit_s)
        settles.append(settle_s)
        pairs.append(admit_s + settle_s)
    started = time.perf_counter()
    base = args.requests
    for batch in range(0, args.requests, args.concurrency):
        await asyncio.gather(
            *(one_request(backend, base + batch + j) for j in range(args.concurrency))
        )
    rate = (args.requests // args.concurrency * args.concurrency) / (time.perf_counter() - started)
    # The request waits for admit only: settle runs in the background after the answer.
    print(f"{name:<7} admit          {percentiles(admits)}   <- added to each request")
    print(f"{name:<7} settle         {percentiles(settles)}")
    print(f"{name:<7} admit+settle   {percentiles(pairs)}")
    print(f"{name:<7} {args.concurrency} in flight:  {rate:9.0f} requests/s (admit+settle)")


class CountingProxy:
    """TCP proxy to Redis counting the commands (RESP arrays) clients send: round trips."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.commands = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(self._pipe(reader, up_writer, True), self._pipe(up_reader, writer))

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool = False
    ) -> None:
        pending = b""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
                if count:
                    pending = self._count(pending + data)
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _count(self, buffer: bytes) -> bytes:
        while (end := buffer.find(b"\r\n")) >= 0:
            pos = end + 2
            for _ in range(int(buffer[1:end])):
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    return buffer
                pos = end + 2 + int(buffer[pos + 1 : end]) + 2
                if len(buffer) < pos:
                    return buffer
            self.commands += 1
            buffer = buffer[pos:]
        return buffer


async def round_trips(url: str, prefix: str, requests: int = 500) -> float:
    parts = urlsplit(url)
    proxy = CountingProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    port = await proxy.start()
    backend = RedisBackend(parts._replace(netloc=f"127.0.0.1:{port}").geturl(), key_prefix=prefix)
    try:
        await one_request(backend, -1)  # connect and load the scripts first
        proxy.commands = 0
        for i in range(requests):
            await one_request(backend, i)
        return proxy.commands / requests
    finally:
        await backend.close()
        await proxy.close()


async def main(args: argparse.Namespace) -> None:
    await measure("memory", MemoryBackend(), args)
    prefix = f"stellara-bench-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(args.redis_url, key_prefix=prefix)
    try:
        await measure("redis", backend, args)
        trips = await round_trips(args.redis_url, prefix)
        print(f"redis   round trips per request (admit+settle): {trips:.2f}")
    finally:
        await backend.close()
        client = Redis.from_url(args.redis_url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("STELLARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    )
    asyncio.run(main(parser.parse_args()))
