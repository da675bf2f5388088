"""Usage records through real HTTP: every model call a gateway answers leaves exactly one row.

The proofs of "done": 1,000 concurrent calls make 1,000 rows matching what the clients were
told and what `/admin/spend` sums up, on SQLite and PostgreSQL; a database killed mid-load
slows no request and loses or doubles no record; `stellara serve` stopped by SIGTERM writes
what it still held; content is stored only when asked; failed and refused calls are recorded.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stellara.catalog import Catalog
from stellara.schema.chat import Usage
from stellara.sim import RunningSimulator
from tests.conftest import (
    LIMITED_KEY,
    MASTER_KEY,
    USER_KEY,
    StartGateway,
    gateway_config,
    set_faults,
    upstream_requests,
)
from tests.e2e.test_cli import free_port
from tests.e2e.test_usage_outage import outage_switch

pytestmark = pytest.mark.e2e

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
CAROL_KEY = "sk-test-carol-key-0003"
DAVE_KEY = "sk-test-dave-key-0004"
# Four keys, four users, two in a team; bob may only call other-model.
KEYS: list[dict[str, Any]] = [
    {"key": USER_KEY, "user": "alice"},
    {"key": LIMITED_KEY, "user": "bob", "models": ["other-model"]},
    {"key": CAROL_KEY, "user": "carol", "team": "red"},
    {"key": DAVE_KEY, "user": "dave", "team": "red"},
]
USERS = {k["key"]: k["user"] for k in KEYS}
PROVIDER_MODELS = {"test-model": "gpt-4o-mini", "other-model": "gpt-4o"}
STELLARA = [sys.executable, "-m", "stellara.cli"]


@dataclass(frozen=True)
class Answer:
    """What a client got: the request id header, status, usage and text, and how long."""

    request_id: str
    status: int
    user: str
    model: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    text: str
    seconds: float


def chat_body(i: int, model: str, *, stream: bool) -> dict[str, Any]:
    """Request `i`: prompts and answer lengths vary, so every row's numbers differ."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": f"request {i}: " + "tell me more " * (i % 13)}],
        "max_tokens": 1 + i % 30,  # the simulator answers 24 tokens unless cut shorter
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def chat(http: aiohttp.ClientSession, url: str, key: str, body: dict[str, Any]) -> Answer:
    """POST a chat request; usage from the JSON body, or from a stream's usage chunk."""
    stream = bool(body.get("stream"))
    started = time.perf_counter()
    async with http.post(
        f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        raw = await response.read()
        request_id = response.headers["x-stellara-request-id"]
        status = response.status
    seconds = time.perf_counter() - started
    usage: dict[str, Any] = {}
    text = ""
    if status == 200 and stream:
        chunks = [
            json.loads(line[len("data: ") :])
            for line in raw.decode().splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
        assert raw.decode().rstrip().endswith("data: [DONE]")
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        [usage] = [c["usage"] for c in chunks if c.get("usage")]
    elif status == 200:
        completion = json.loads(raw)
        usage = completion["usage"]
        text = completion["choices"][0]["message"]["content"]
    return Answer(
        request_id=request_id,
        status=status,
        user=USERS.get(key, "?"),
        model=body["model"],
        stream=stream,
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        text=text,
        seconds=seconds,
    )


async def admin(http: aiohttp.ClientSession, url: str, path: str) -> Any:
    async with http.get(f"{url}{path}", headers=MASTER) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def status_when_written(
    http: aiohttp.ClientSession, url: str, count: int, timeout_s: float = 20.0
) -> dict[str, Any]:
    """The writer's status once nothing is pending and `count` records are written, or once
    nothing is pending and the count has not moved for a second (records went missing: the
    caller's assertions say which)."""
    deadline = time.monotonic() + timeout_s
    idle_since, last_written = time.monotonic(), -1
    while True:
        status: dict[str, Any] = await admin(http, url, "/admin/usage/status")
        if status["pending"] or status["written"] != last_written:
            idle_since, last_written = time.monotonic(), status["written"]
        elif status["written"] >= count or time.monotonic() - idle_since > 1.0:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"the writer never caught up with {count} records: {status}")
        await asyncio.sleep(0.05)


async def all_records(http: aiohttp.ClientSession, url: str, query: str = "") -> list[Any]:
    """Every record, page by page (small pages: the cursor is part of what is tested)."""
    records: list[Any] = []
    after = ""
    while True:
        page = await admin(http, url, f"/admin/usage?limit=400{after}{query}")
        records += page["data"]
        if not page["has_more"]:
            return records
        after = f"&after={page['next_after']}"


def by_request_id(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ids = [r["request_id"] for r in records]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} request ids recorded twice: {duplicates[:5]}"
    return {r["request_id"]: r for r in records}


@functools.cache
def shipped_catalog() -> Catalog:
    return Catalog.shipped()


def expected_cost(answer: Answer) -> float:
    """The answer's price by the shipped catalog, from the usage the client was told."""
    usage = Usage(
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        total_tokens=answer.prompt_tokens + answer.completion_tokens,
    )
    return shipped_catalog().cost_usd("openai", PROVIDER_MODELS[answer.model], usage)


def store(url: str, **settings: Any) -> dict[str, Any]:
    return {"url": url, "flush_interval_s": 0.05, **settings}


async def test_thousand_concurrent_calls_make_a_thousand_exact_rows(
    database_url: str, sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        gateway_config(sim.url, keys=KEYS, usage_store=store(database_url, batch_records=200))
    )
    keys = [k["key"] for k in KEYS]

    def request(i: int) -> tuple[str, dict[str, Any]]:
        key = keys[i % len(keys)]
        model = "other-model" if key == LIMITED_KEY or i % 3 == 0 else "test-model"
        return key, chat_body(i, model, stream=(i // 4) % 2 == 0)

    connector = aiohttp.TCPConnector(limit=0)  # all 1,000 in flight at once
    async with aiohttp.ClientSession(connector=connector) as http:
        answers = await asyncio.gather(*(chat(http, gateway.url, *request(i)) for i in range(1000)))
        assert Counter(a.status for a in answers) == {200: 1000}
        assert Counter(a.stream for a in answers) == {True: 500, False: 500}
        assert len({a.request_id for a in answers}) == 1000
        status = await status_when_written(http, gateway.url, 1000)
        records = by_request_id(await all_records(http, gateway.url))
        spends = {
            group_by: await admin(http, gateway.url, f"/admin/spend?group_by={group_by}")
            for group_by in ("user", "model", "provider", "day", "team", "key")
        }
        async with http.get(f"{gateway.url}/admin/usage?format=csv", headers=MASTER) as response:
            assert response.status == 200
            exported = list(csv.DictReader(io.StringIO(await response.text())))

    assert (status["written"], status["dropped"], status["healthy"]) == (1000, 0, True)
    assert set(records) == {a.request_id for a in answers}
    for answer in answers:
        row = records[answer.request_id]
        assert (row["prompt_tokens"], row["completion_tokens"]) == (
            answer.prompt_tokens,
            answer.completion_tokens,
        ), answer
        assert (row["user"], row["model"], row["stream"], row["status"]) == (
            answer.user,
            answer.model,
            answer.stream,
            200,
        )
        assert row["provider_model"] == PROVIDER_MODELS[answer.model]
        assert row["cost_usd"] == pytest.approx(expected_cost(answer), rel=1e-9)
        assert row["cost_usd"] > 0
    assert len({a.prompt_tokens for a in answers}) > 5  # the numbers checked do vary
    assert len({a.completion_tokens for a in answers}) > 5

    row_cost = sum(r["cost_usd"] for r in records.values())
    for group_by, spend in spends.items():
        total = spend["total"]
        assert total["requests"] == 1000, group_by
        assert total["prompt_tokens"] == sum(a.prompt_tokens for a in answers), group_by
        assert total["completion_tokens"] == sum(a.completion_tokens for a in answers), group_by
        assert total["errors"] == 0, group_by
        assert total["cost_usd"] == pytest.approx(row_cost, rel=1e-9), group_by
        assert total["cost_usd"] == pytest.approx(sum(map(expected_cost, answers)), rel=1e-9)
    per_user = {g["group"]: g["requests"] for g in spends["user"]["data"]}
    assert per_user == Counter(a.user for a in answers)
    per_model = {g["group"]: g["cost_usd"] for g in spends["model"]["data"]}
    for model in PROVIDER_MODELS:
        mine = [a for a in answers if a.model == model]
        assert per_model[model] == pytest.approx(sum(map(expected_cost, mine)), rel=1e-9)
    assert {g["group"]: g["requests"] for g in spends["team"]["data"]} == {None: 500, "red": 500}
    assert len(spends["key"]["data"]) == 4
    assert len(exported) == 1000
    assert {r["request_id"] for r in exported} == set(records)


async def test_database_killed_mid_load_slows_nothing_and_loses_nothing(
    database_url: str, sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    async with outage_switch(database_url) as outage:
        gateway = await start_gateway(
            gateway_config(sim.url, keys=KEYS, usage_store=store(outage.url, batch_records=50))
        )
        async with aiohttp.ClientSession() as http:
            phase = "before"
            # By the phase a request started and ended in; "across" spans a switch.
            answers: dict[str, list[Answer]] = {"before": [], "down": [], "after": [], "across": []}
            stop = asyncio.Event()
            keys = [USER_KEY, CAROL_KEY, DAVE_KEY]

            async def worker(n: int) -> None:
                i = n
                while not stop.is_set():
                    started_in = phase
                    body = chat_body(i, "test-model", stream=i % 2 == 0)
                    answer = await chat(http, gateway.url, keys[i % 3], body)
                    answers[started_in if started_in == phase else "across"].append(answer)
                    i += 16
                    await asyncio.sleep(0.005)

            workers = [asyncio.create_task(worker(n)) for n in range(16)]
            await asyncio.sleep(0.5)
            first = await admin(http, gateway.url, "/admin/usage/status")
            assert first["written"] > 0  # the store worked before the outage
            await outage.take_down()
            phase = "down"
            at_down = await admin(http, gateway.url, "/admin/usage/status")
            await asyncio.sleep(1.5)
            answered_while_down = len(answers["down"])  # each published before its last byte
            at_revive = await admin(http, gateway.url, "/admin/usage/status")
            await outage.bring_back()
            phase = "after"
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*workers)
            every = [a for group in answers.values() for a in group]
            assert Counter(a.status for a in every) == {200: len(every)}
            status = await status_when_written(http, gateway.url, len(every))
            records = by_request_id(await all_records(http, gateway.url))

    down = answers["down"]
    assert len(down) >= 100, "too little load while the store was down"
    down_s = sorted(a.seconds for a in down)
    p99 = down_s[int(len(down_s) * 0.99)]
    assert p99 < 1.0, f"p99 {p99:.3f} s over {len(down)} requests while the store was down"
    # The outage was real: nothing (but a batch in flight) got in, everything waited.
    assert at_revive["written"] <= at_down["written"] + 50
    assert at_revive["pending"] >= answered_while_down
    if outage.is_refused:
        assert at_revive["healthy"] is False
        assert at_revive["last_error"]
    assert (status["written"], status["dropped"], status["healthy"]) == (len(every), 0, True)
    assert set(records) == {a.request_id for a in every}
    for answer in every:
        row = records[answer.request_id]
        assert (row["prompt_tokens"], row["completion_tokens"]) == (
            answer.prompt_tokens,
            answer.completion_tokens,
        )


async def test_sigterm_writes_every_buffered_record(sim: RunningSimulator, tmp_path: Path) -> None:
    db_path = tmp_path / "usage.db"
    port = free_port()
    config = gateway_config(
        sim.url,
        keys=KEYS,
        # Nothing is written before the stop: a minute between flushes, batches of 10,000.
        usage_store={
            "url": f"sqlite:///{db_path}",
            "flush_interval_s": 60,
            "batch_records": 10_000,
        },
    )
    config_path = tmp_path / "stellara.yaml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    process = await asyncio.create_subprocess_exec(
        *STELLARA,
        "serve",
        "--config",
        str(config_path),
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    stderr = asyncio.create_task(process.stderr.read())  # drained all along: never blocks it
    url = f"http://127.0.0.1:{port}"

    def send(i: int, http: aiohttp.ClientSession) -> Awaitable[Answer]:
        return chat(http, url, KEYS[i % 4]["key"], chat_body(i, "other-model", stream=i % 2 == 1))

    try:
        async with aiohttp.ClientSession() as http:
            await wait_until_ready(http, url, process)
            answers = list(await asyncio.gather(*(send(i, http) for i in range(59))))
            held = await admin(http, url, "/admin/usage/status")
            answers.append(await send(59, http))  # a stream
            process.send_signal(signal.SIGTERM)  # right after its last byte
        code = await asyncio.wait_for(process.wait(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = (await stderr).decode(errors="replace")
    assert code == 0, log
    assert Counter(a.status for a in answers) == {200: 60}
    assert (held["pending"], held["written"]) == (59, 0)  # still in memory, not written
    rows = stored_rows(db_path)
    assert len(rows) == 60
    assert rows == {a.request_id: (a.prompt_tokens, a.completion_tokens, 200) for a in answers}


def stored_rows(db_path: Path) -> dict[str, tuple[int, int, int]]:
    """request id → tokens and status, read from the SQLite file with a plain sqlite3."""
    connection = sqlite3.connect(db_path)
    try:
        rows = connection.execute(
            "SELECT request_id, prompt_tokens, completion_tokens, status FROM usage_records"
        ).fetchall()
    finally:
        connection.close()
    assert len({r[0] for r in rows}) == len(rows), "a request id recorded twice"
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def wait_until_ready(
    http: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process
) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.returncode is None, f"stellara serve exited with {process.returncode}"
        try:
            async with http.get(f"{url}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("stellara serve never answered /healthz")


SECRET = "SECRET-PROMPT-7f3a"


async def test_content_is_not_stored_by_default(
    sim: RunningSimulator, start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await start_gateway(gateway_config(sim.url))  # the default store: ./stellara.db
    async with aiohttp.ClientSession() as http:
        answers = [
            await chat(http, gateway.url, USER_KEY, content_body(stream=stream))
            for stream in (False, True)
        ]
        assert [a.status for a in answers] == [200, 200]
        await status_when_written(http, gateway.url, 2)
        records = by_request_id(await all_records(http, gateway.url))
    assert set(records) == {a.request_id for a in answers}
    for row in records.values():
        assert (row["prompt"], row["completion"]) == (None, None)
    assert files_holding(tmp_path, "stellara.db*", SECRET) == (True, [])


def files_holding(directory: Path, pattern: str, text: str) -> tuple[bool, list[str]]:
    """Whether files match `pattern` (the database and its write-ahead log), and those of
    them whose bytes contain `text`."""
    files = list(directory.glob(pattern))
    return bool(files), [f.name for f in files if text.encode() in f.read_bytes()]


async def test_content_is_stored_with_log_content(
    database_url: str, sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        gateway_config(sim.url, usage_store=store(database_url, log_content=True))
    )
    async with aiohttp.ClientSession() as http:
        answers = [
            await chat(http, gateway.url, USER_KEY, content_body(stream=stream))
            for stream in (False, True)
        ]
        assert [a.status for a in answers] == [200, 200]
        await status_when_written(http, gateway.url, 2)
        records = by_request_id(await all_records(http, gateway.url))
    for answer in answers:
        row = records[answer.request_id]
        assert row["stream"] is answer.stream
        assert f"{SECRET} from the user" in row["prompt"]
        assert "Answer like a pirate." in row["prompt"]  # every message, not only the last
        assert answer.text
        assert row["completion"] == answer.text


def content_body(*, stream: bool) -> dict[str, Any]:
    body = chat_body(0, "test-model", stream=stream)
    body["messages"] = [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": f"{SECRET} from the user"},
    ]
    return body


async def test_upstream_failure_is_recorded_as_502_with_its_error(
    database_url: str, sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    resilience = {
        "retry": {"base_delay_ms": 1, "max_delay_ms": 5},
        "circuit_breaker": {"scope": "target"},  # other-model stays callable
    }
    gateway = await start_gateway(
        gateway_config(sim.url, resilience=resilience, usage_store=store(database_url))
    )
    # Every call of gpt-4o-mini (test-model's target) fails; gpt-4o (other-model's) answers.
    await set_faults(sim, {"kind": "status", "status": 500, "model": "gpt-4o-mini"})
    async with aiohttp.ClientSession() as http:
        failed = [
            await chat(http, gateway.url, USER_KEY, chat_body(1, "test-model", stream=stream))
            for stream in (False, True)
        ]
        assert [a.status for a in failed] == [502, 502]
        answered = await chat(
            http, gateway.url, USER_KEY, chat_body(2, "other-model", stream=False)
        )
        assert answered.status == 200
        await status_when_written(http, gateway.url, 3)
        records = by_request_id(await all_records(http, gateway.url))
        only_502 = await all_records(http, gateway.url, "&status=502")
        spend = await admin(http, gateway.url, "/admin/spend?group_by=user")
    assert set(records) == {a.request_id for a in [*failed, answered]}
    for answer in failed:
        row = records[answer.request_id]
        assert row["status"] == 502
        assert row["error"]
        assert (row["user"], row["model"], row["stream"]) == ("alice", "test-model", answer.stream)
        assert row["provider"] == "sim"
        assert (row["prompt_tokens"], row["completion_tokens"], row["cost_usd"]) == (0, 0, 0)
    upstream = [r for r in await upstream_requests(sim) if r["body"]["model"] == "gpt-4o-mini"]
    assert sum(records[a.request_id]["attempts"] for a in failed) == len(upstream) >= 2
    assert records[answered.request_id]["status"] == 200
    assert records[answered.request_id]["error"] is None
    assert {r["request_id"] for r in only_502} == {a.request_id for a in failed}
    assert (spend["total"]["requests"], spend["total"]["errors"]) == (3, 2)


async def test_refused_request_is_recorded_as_429(
    database_url: str, sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    limits = {"tiers": {"default": {"rate": {"requests": 1, "window_s": 60}}}}
    gateway = await start_gateway(
        gateway_config(sim.url, limits=limits, usage_store=store(database_url))
    )
    async with aiohttp.ClientSession() as http:
        answers = [
            await chat(http, gateway.url, USER_KEY, chat_body(i, "test-model", stream=i == 2))
            for i in range(3)
        ]
        assert [a.status for a in answers] == [200, 429, 429]
        await status_when_written(http, gateway.url, 3)
        records = by_request_id(await all_records(http, gateway.url))
    assert set(records) == {a.request_id for a in answers}
    assert records[answers[0].request_id]["status"] == 200
    # The first refusal read the request; the next one was refused before its body was read
    # (the limit it hit cannot pass any request until it resets): no model, no stream known.
    read, unread = (records[a.request_id] for a in answers[1:])
    assert (read["model"], read["stream"]) == ("test-model", False)
    assert (unread["model"], unread["stream"]) == ("", False)
    for row in (read, unread):
        assert row["status"] == 429
        assert row["error"]
        assert row["user"] == "alice"
        assert row["provider"] is None  # refused before any provider was called
        assert (row["prompt_tokens"], row["completion_tokens"], row["cost_usd"]) == (0, 0, 0)
