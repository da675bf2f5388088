"""The experiments admin API over HTTP, on a gateway in front of the simulator: create, list,
pause, stop with a winner, resume; the report's numbers against the records and feedback
behind them (SQLite and PostgreSQL), its CSV; and the 400 / 404 / 409 / 503 answers."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert

from stellara.assembly import build_runtime
from stellara.assembly.config import check_config
from stellara.events import RequestEnded
from stellara.experiments.stats import Sample, compare, mean_interval
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from stellara.store.db import Database
from stellara.store.tables import feedback, usage_records
from stellara.store.usage import usage_row
from tests.conftest import (
    MASTER_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    gateway_config,
    routes_only,
    upstream_requests,
)
from tests.store.test_usage_writer import completed, failed

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
USER = {"Authorization": f"Bearer {USER_KEY}"}
METRICS = {
    "thumbs_up": {"type": "boolean"},
    "complaints": {"type": "number", "min": 0, "higher_is_better": False},
}
EXPERIMENT: dict[str, Any] = {
    "id": "bigger-model",
    "model": "test-model",
    "metric": "thumbs_up",
    "variants": [
        {"name": "control", "share": 50},
        {"name": "big", "share": 50, "targets": [{"provider": "sim", "model": "gpt-4o"}]},
        {"name": "brief", "share": 0, "overrides": {"system_prefix": "Be brief."}},
    ],
}
CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "Which variant?"}]}


def experiments_config(sim_url: str, database_url: str | None = None) -> dict[str, Any]:
    store: dict[str, Any] = {"flush_interval_s": 0.05}
    if database_url is not None:
        store["url"] = database_url
    return gateway_config(sim_url, feedback={"metrics": METRICS}, usage_store=store)


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(experiments_config(sim.url))


async def call(
    http: aiohttp.ClientSession,
    gateway: RunningGateway,
    method: str,
    path: str,
    status: int = 200,
    *,
    json: Any = None,
    data: bytes | None = None,
) -> Any:
    """The JSON answer of an admin call, asserting its status."""
    async with http.request(
        method, gateway.url + path, json=json, data=data, headers=MASTER
    ) as response:
        body = await response.json()
        assert response.status == status, body
        return body


async def chat(http: aiohttp.ClientSession, gateway: RunningGateway) -> tuple[str, str]:
    """alice's variant of a chat call: (experiment, variant) from the answer's headers."""
    async with http.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=USER) as r:
        assert r.status == 200, await r.text()
        return r.headers["x-stellara-experiment"], r.headers["x-stellara-variant"]


async def test_an_experiment_is_created_listed_stopped_and_resumed(
    gateway: RunningGateway, http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    created = await call(http, gateway, "POST", "/admin/experiments", 201, json=EXPERIMENT)
    assert created["id"] == "bigger-model"
    assert (created["status"], created["winner"], created["source"]) == ("running", None, "api")
    assert created["shares"] == {"control": 50.0, "big": 50.0, "brief": 0.0}
    assert created["created_at"].endswith("Z")
    assert created["created_at_epoch_s"] == created["updated_at_epoch_s"]
    definition = created["definition"]
    assert {k: definition[k] for k in ("id", "model", "metric")} == {
        k: EXPERIMENT[k] for k in ("id", "model", "metric")
    }
    assert [v["name"] for v in definition["variants"]] == ["control", "big", "brief"]
    assert definition["variants"][1]["targets"] == [
        {"provider": "sim", "model": "gpt-4o", "weight": 1.0}
    ]
    assert "status" not in definition  # what runs is the top level's

    # Applied on this process at once: alice is served by her variant.
    experiment, variant = await chat(http, gateway)
    assert experiment == "bigger-model"
    assert variant in ("control", "big")
    served_by = {"control": "gpt-4o-mini", "big": "gpt-4o"}
    assert (await upstream_requests(sim))[-1]["body"]["model"] == served_by[variant]

    listed = await call(http, gateway, "GET", "/admin/experiments")
    assert listed == {"object": "list", "data": [created]}
    assert await call(http, gateway, "GET", "/admin/experiments/bigger-model") == created

    paused = await call(
        http, gateway, "PATCH", "/admin/experiments/bigger-model", json={"status": "paused"}
    )
    assert (paused["status"], paused["winner"]) == ("paused", None)
    assert paused["updated_at_epoch_s"] >= created["updated_at_epoch_s"]
    assert await chat(http, gateway) == ("bigger-model", "control")  # paused: the control

    stopped = await call(
        http,
        gateway,
        "PATCH",
        "/admin/experiments/bigger-model",
        json={"status": "stopped", "winner": "big"},
    )
    assert (stopped["status"], stopped["winner"]) == ("stopped", "big")
    assert await chat(http, gateway) == ("bigger-model", "big")  # everyone gets the winner
    assert (await upstream_requests(sim))[-1]["body"]["model"] == "gpt-4o"

    # Stopping again without a winner keeps it; null clears it (the control again).
    path = "/admin/experiments/bigger-model"
    kept = await call(http, gateway, "PATCH", path, json={"status": "stopped"})
    assert kept == stopped  # nothing changed, nothing written
    cleared = await call(http, gateway, "PATCH", path, json={"winner": None})
    assert (cleared["status"], cleared["winner"]) == ("stopped", None)
    assert await chat(http, gateway) == ("bigger-model", "control")

    resumed = await call(http, gateway, "PATCH", path, json={"status": "running"})
    assert (resumed["status"], resumed["winner"]) == ("running", None)
    assert await call(http, gateway, "GET", path) == resumed


async def test_requests_through_the_gateway_are_counted_per_variant(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    await call(http, gateway, "POST", "/admin/experiments", 201, json=EXPERIMENT)
    served: dict[str, int] = {}
    for i in range(12):
        key = await call(http, gateway, "POST", "/admin/keys", 201, json={"user": f"u{i}"})
        headers = {"Authorization": f"Bearer {key['key']}"}
        async with http.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers) as r:
            assert r.status == 200
            variant = r.headers["x-stellara-variant"]
        served[variant] = served.get(variant, 0) + 1
    path = "/admin/experiments/bigger-model/report"
    async with asyncio.timeout(5):  # the usage writer flushes every 50 ms
        while True:
            found = await call(http, gateway, "GET", path)
            if sum(v["requests"] for v in found["variants"]) == 12:
                break
            await asyncio.sleep(0.05)
    assert {v["name"]: v["requests"] for v in found["variants"] if v["requests"]} == served
    for variant in found["variants"]:
        if variant["requests"]:
            assert variant["error_rate"] == 0.0
            assert variant["latency_ms"]["p50"] > 0
            assert variant["cost_usd_per_request"] > 0


# The report's numbers, from records and feedback written straight to the database.

CONTROL_LATENCY = [100.0 + i for i in range(40)]
BIG_LATENCY = [200.0 + i for i in range(40)]


def seeded_records() -> list[RequestEnded]:
    """control: 40 answers and 4 errors; big: 40 answers, dearer and wordier; brief: none."""

    def served(request_id: str, variant: str, **facts: Any) -> RequestEnded:
        return completed(request_id, experiment="bigger-model", variant=variant, **facts)

    records = [
        served(f"c{i}", "control", latency_ms=ms, ttfb_ms=ms / 2, cost_usd=0.002)
        for i, ms in enumerate(CONTROL_LATENCY)
    ]
    records += [
        failed(
            f"e{i}",
            experiment="bigger-model",
            variant="control",
            prompt_tokens=0,
            completion_tokens=0,
            cost_usd=0.0,
        )
        for i in range(4)
    ]
    records += [
        served(f"b{i}", "big", latency_ms=ms, completion_tokens=40, cost_usd=0.01)
        for i, ms in enumerate(BIG_LATENCY)
    ]
    records.append(completed("p1", cost_usd=5.0))  # a pinned request: not counted
    return records


def seeded_feedback() -> list[dict[str, Any]]:
    """thumbs_up: 12/40 on control, 36/40 on big; complaints: 0, 1, 2, … on control, none on
    39 of big's, and bob's on the 40th, alice's answer, which does not count."""
    values = [(f"c{i}", "thumbs_up", float(i < 12)) for i in range(40)]
    values += [(f"b{i}", "thumbs_up", float(i < 36)) for i in range(40)]
    values += [(f"c{i}", "complaints", float(i % 3)) for i in range(40)]
    values += [(f"b{i}", "complaints", 0.0) for i in range(1, 40)]
    rows = [
        {"request_id": r, "metric": m, "value": v, "user_id": "alice", "created_at": 0.0}
        for r, m, v in values
    ]
    rows.append(
        {"request_id": "b0", "metric": "complaints", "value": 50.0, "user_id": "bob",
         "created_at": 0.0}
    )  # fmt: skip
    return rows


async def seed(database_url: str) -> None:
    database = Database(database_url)
    try:
        async with database.engine.begin() as connection:
            rows = [usage_row(e, log_content=False) for e in seeded_records()]
            await connection.execute(insert(usage_records), rows)
            await connection.execute(insert(feedback), seeded_feedback())
    finally:
        await database.close()


def sample(values: list[float]) -> Sample:
    return Sample(len(values), sum(values), sum(v * v for v in values))


async def test_the_report_shows_what_the_records_and_feedback_hold(
    sim: RunningSimulator,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    database_url: str,
) -> None:
    gateway = await start_gateway(experiments_config(sim.url, database_url))
    await call(http, gateway, "POST", "/admin/experiments", 201, json=EXPERIMENT)
    await seed(database_url)
    report = await call(http, gateway, "GET", "/admin/experiments/bigger-model/report")
    assert {k: v for k, v in report.items() if k != "variants"} == {
        "experiment": "bigger-model",
        "model": "test-model",
        "status": "running",
        "winner": None,
        "control": "control",
        "allocation": "fixed",
        "metric": "thumbs_up",
        "percentile_rows": 100_000,
    }
    control, big, brief = report["variants"]

    assert (control["name"], control["share"], control["requests"]) == ("control", 50.0, 44)
    assert control["errors"] == 4
    assert control["error_rate"] == pytest.approx(4 / 44)
    assert control["latency_ms"] == {"p50": pytest.approx(119.5), "p95": pytest.approx(137.05)}
    assert control["ttfb_ms"] == {"p50": pytest.approx(59.75), "p95": pytest.approx(68.525)}
    assert control["tokens"] == {
        "prompt": pytest.approx(400 / 44),
        "completion": pytest.approx(800 / 44),
    }
    assert control["cost_usd_per_request"] == pytest.approx(0.08 / 44)
    assert control["vs_control"] == {}

    assert (big["requests"], big["errors"], big["error_rate"]) == (40, 0, 0.0)
    assert big["latency_ms"] == {"p50": pytest.approx(219.5), "p95": pytest.approx(237.05)}
    assert big["ttfb_ms"] == {"p50": None, "p95": None}
    assert big["tokens"] == {"prompt": 10.0, "completion": 40.0}
    assert big["cost_usd_per_request"] == pytest.approx(0.01)

    thumbs = {
        "control": sample([float(i < 12) for i in range(40)]),
        "big": sample([float(i < 36) for i in range(40)]),
    }
    complaints = {
        "control": sample([float(i % 3) for i in range(40)]),
        "big": sample([0.0] * 39),
    }
    for variant in (control, big):
        name = variant["name"]
        assert variant["metrics"] == {
            "thumbs_up": {
                "n": 40,
                "mean": pytest.approx(thumbs[name].mean),
                "ci95": pytest.approx(list(mean_interval(thumbs[name], boolean=True) or ())),
            },
            "complaints": {
                "n": complaints[name].n,
                "mean": pytest.approx(complaints[name].mean),
                "ci95": pytest.approx(list(mean_interval(complaints[name]) or ())),
            },
        }
    more_thumbs = compare(thumbs["big"], thumbs["control"], higher_is_better=True, boolean=True)
    fewer_complaints = compare(complaints["big"], complaints["control"], higher_is_better=False)
    assert big["vs_control"] == {
        "thumbs_up": {
            "diff": pytest.approx(0.6),
            "ci95": pytest.approx(list(more_thumbs.ci95 or ())),
            "verdict": "better",
        },
        "complaints": {
            "diff": pytest.approx(-39 / 40),
            "ci95": pytest.approx(list(fewer_complaints.ci95 or ())),
            "verdict": "better",  # fewer complaints, where lower is better
        },
    }

    nothing = {"n": 0, "mean": None, "ci95": None}
    assert brief == {
        "name": "brief",
        "share": 0.0,
        "requests": 0,
        "errors": 0,
        "error_rate": None,
        "latency_ms": {"p50": None, "p95": None},
        "ttfb_ms": {"p50": None, "p95": None},
        "tokens": {"prompt": None, "completion": None},
        "cost_usd": 0.0,
        "cost_usd_per_request": None,
        "metrics": {"thumbs_up": nothing, "complaints": nothing},
        "vs_control": {
            "thumbs_up": {"diff": None, "ci95": None, "verdict": "no_difference_yet"},
            "complaints": {"diff": None, "ci95": None, "verdict": "no_difference_yet"},
        },
    }

    # The same numbers as CSV: one row per variant, each metric's columns by name.
    async with http.get(
        f"{gateway.url}/admin/experiments/bigger-model/report?format=csv", headers=MASTER
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert "bigger-model.csv" in response.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [row["variant"] for row in rows] == ["control", "big", "brief"]
    control_row, big_row, brief_row = rows
    assert control_row["experiment"] == "bigger-model"
    assert (control_row["status"], control_row["requests"], control_row["errors"]) == (
        "running",
        "44",
        "4",
    )
    assert float(control_row["latency_ms_p95"]) == pytest.approx(137.05)
    assert float(control_row["cost_usd_per_request"]) == pytest.approx(0.08 / 44)
    assert float(control_row["thumbs_up_mean"]) == pytest.approx(0.3)
    assert control_row["thumbs_up_diff"] == control_row["thumbs_up_verdict"] == ""
    assert big_row["thumbs_up_verdict"] == big_row["complaints_verdict"] == "better"
    assert float(big_row["thumbs_up_diff_ci95_lo"]) == pytest.approx(
        big["vs_control"]["thumbs_up"]["ci95"][0]
    )
    assert float(big_row["completion_tokens_per_request"]) == 40.0
    assert brief_row["latency_ms_p50"] == brief_row["thumbs_up_mean"] == ""
    assert brief_row["thumbs_up_verdict"] == "no_difference_yet"


async def test_an_adaptive_experiment_shows_the_allocations_shares(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    adaptive = {**EXPERIMENT, "allocation": "adaptive", "min_share": 10}
    created = await call(http, gateway, "POST", "/admin/experiments", 201, json=adaptive)
    assert created["shares"]["brief"] == 0.0  # a zero share stays off
    assert sum(created["shares"].values()) == pytest.approx(100.0)
    runtime = gateway.app[RUNTIME]
    for _ in range(100):  # big wins every time, the control never
        await runtime.state.arms.add("bigger-model", "big", 1.0)
        await runtime.state.arms.add("bigger-model", "control", 0.0)
    await runtime.experiments.refresh()
    shares = {"control": pytest.approx(10.0), "big": pytest.approx(90.0), "brief": 0.0}
    assert (await call(http, gateway, "GET", "/admin/experiments/bigger-model"))["shares"] == shares
    found = await call(http, gateway, "GET", "/admin/experiments/bigger-model/report")
    assert {v["name"]: v["share"] for v in found["variants"]} == shares


async def test_the_dashboard_feed_shows_the_reports_not_stopped_first(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    older = {**EXPERIMENT, "id": "older", "model": "other-model", "status": "stopped"}
    await call(http, gateway, "POST", "/admin/experiments", 201, json=older)
    await call(http, gateway, "POST", "/admin/experiments", 201, json=EXPERIMENT)
    await seed("sqlite:///stellara.db")  # the gateway's, in the test's working directory
    feed_url = f"{gateway.url}/dashboard/experiments"
    async with http.get(feed_url, headers=MASTER) as refused:
        assert refused.status == 401  # the page's cookie only
    # unsafe: aiohttp keeps no cookies from IP-address hosts otherwise
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(f"{gateway.url}/dashboard?key={MASTER_KEY}") as page:
            assert page.status == 200
        async with browser.get(feed_url) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-store"
            feed = await response.json()
    assert feed["total"] == 2
    assert [e["experiment"] for e in feed["experiments"]] == ["bigger-model", "older"]
    shown = feed["experiments"][0]
    full = await call(http, gateway, "GET", "/admin/experiments/bigger-model/report")
    # The same report, but for the percentiles the panel does not show.
    no_percentiles = {"p50": None, "p95": None}
    assert shown == {
        **full,
        "variants": [
            {**v, "latency_ms": no_percentiles, "ttfb_ms": no_percentiles} for v in full["variants"]
        ],
    }
    assert full["variants"][0]["latency_ms"]["p50"] is not None


INVALID_BODIES = [
    ({**EXPERIMENT, "variants": [{"name": "a", "share": 50}, {"name": "b", "share": 40}]},
     ["variant shares must add up to 100, not 90"]),
    ({**EXPERIMENT, "id": "no spaces", "colour": "red"},
     ["id: String should match pattern", "colour: Extra inputs are not permitted"]),
    ({**EXPERIMENT, "variants": [{"name": "a", "share": 150}, {"name": "b", "share": -50}]},
     ["variants[0].share: Input should be less than or equal to 100",
      "variants[1].share: Input should be greater than or equal to 0"]),
    ({**EXPERIMENT, "model": "no-such-model"},
     ["experiment.model: unknown model 'no-such-model'"]),
    ({**EXPERIMENT, "metric": "happiness"},
     ["experiment.metric: no feedback metric is named 'happiness'"]),
    ({**EXPERIMENT, "variants": [
        {"name": "a", "share": 50},
        {"name": "b", "share": 50, "targets": [{"provider": "nowhere", "model": "m"}]}]},
     ["experiment.variants[1].targets[0].provider: unknown provider 'nowhere'"]),
]  # fmt: skip


@pytest.mark.parametrize(("body", "problems"), INVALID_BODIES)
async def test_an_invalid_experiment_is_a_400_listing_every_problem(
    gateway: RunningGateway, http: aiohttp.ClientSession, body: Any, problems: list[str]
) -> None:
    answer = await call(http, gateway, "POST", "/admin/experiments", 400, json=body)
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Invalid experiment: ")
    for problem in problems:
        assert problem in error["message"]
    assert (await call(http, gateway, "GET", "/admin/experiments"))["data"] == []


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b""])
async def test_a_body_that_is_no_json_object_is_a_400(
    gateway: RunningGateway, http: aiohttp.ClientSession, data: bytes
) -> None:
    answer = await call(http, gateway, "POST", "/admin/experiments", 400, data=data)
    assert answer["error"]["type"] == "invalid_request_error"


async def test_changes_that_break_the_rules_are_400s(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    await call(http, gateway, "POST", "/admin/experiments", 201, json=EXPERIMENT)
    path = "/admin/experiments/bigger-model"
    refused = [
        ({"winner": "big"}, "A winner is chosen when the experiment is stopped"),
        ({"status": "paused", "winner": "big"}, "A winner is chosen when the experiment"),
        ({"status": "stopped", "winner": "nobody"}, "has no variant 'nobody'"),
        ({"status": "finished"}, "status: Input should be 'running', 'paused' or 'stopped'"),
        ({"reason": "done"}, "reason: Extra inputs are not permitted"),
    ]
    for body, message in refused:
        answer = await call(http, gateway, "PATCH", path, 400, json=body)
        assert message in answer["error"]["message"], answer
    assert (await call(http, gateway, "GET", path))["status"] == "running"
    answer = await call(http, gateway, "GET", f"{path}/report?format=xml", 400)
    assert answer["error"]["param"] == "format"


@pytest.mark.parametrize("experiment_id", ["nope", "a" * 65, "bad%00id", "-dash"])
async def test_an_unknown_experiment_is_a_404(
    gateway: RunningGateway, http: aiohttp.ClientSession, experiment_id: str
) -> None:
    path = f"/admin/experiments/{experiment_id}"
    for method, suffix, body in (("GET", "", None), ("PATCH", "", {}), ("GET", "/report", None)):
        answer = await call(http, gateway, method, path + suffix, 404, json=body)
        assert answer["error"]["code"] == "experiment_not_found"


async def test_one_experiment_at_a_time_runs_on_a_model(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    await call(http, gateway, "POST", "/admin/experiments", 201, json=EXPERIMENT)
    taken = await call(http, gateway, "POST", "/admin/experiments", 409, json=EXPERIMENT)
    assert taken["error"]["code"] == "conflict"
    assert "exists already" in taken["error"]["message"]
    second = {**EXPERIMENT, "id": "second"}
    busy = await call(http, gateway, "POST", "/admin/experiments", 409, json=second)
    assert "'bigger-model' runs on the model 'test-model'" in busy["error"]["message"]
    # A stopped one may wait beside it; once the first stops, the second may run.
    stopped_second = {**second, "status": "stopped"}
    await call(http, gateway, "POST", "/admin/experiments", 201, json=stopped_second)
    await call(http, gateway, "PATCH", "/admin/experiments/second", 409, json={"status": "running"})
    await call(
        http, gateway, "PATCH", "/admin/experiments/bigger-model", json={"status": "stopped"}
    )
    await call(http, gateway, "PATCH", "/admin/experiments/second", json={"status": "running"})
    assert (await chat(http, gateway))[0] == "second"
    await call(
        http,
        gateway,
        "PATCH",
        "/admin/experiments/bigger-model",
        409,
        json={"status": "paused"},
    )


@pytest.fixture
async def storeless(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The routes of a gateway whose database has no schema (never migrated)."""
    config = check_config(
        {
            "server": {"master_key": MASTER_KEY},
            "usage_store": {"url": f"sqlite:///{tmp_path / 'empty.db'}"},
        }
    )
    runtime = build_runtime(config)
    client = TestClient(TestServer(routes_only(runtime)))
    await client.start_server()
    yield client
    await client.close()
    await runtime.database.close()


async def test_a_store_that_fails_is_a_503(
    storeless: TestClient[web.Request, web.Application],
) -> None:
    for path in ("/admin/experiments", "/admin/experiments/x", "/admin/experiments/x/report"):
        async with storeless.get(path, headers=MASTER) as response:
            assert response.status == 503, await response.text()
            assert "unavailable" in (await response.json())["error"]["message"]
