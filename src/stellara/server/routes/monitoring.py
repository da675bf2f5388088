"""The monitoring API: request statistics since the last reset, for the deployment.

`GET /ai-orchestration/stats` (summary) and `GET /ai-orchestration/monitoring/stats`
(detailed) answer for any valid key; `POST /ai-orchestration/monitoring/reset` needs the master
key. With a state backend shared through Redis the numbers are those of every live gateway
process (their snapshots, at most a few seconds old, plus this process's current counts) and a
reset starts every process again; otherwise they are this process's. Latencies are in
milliseconds, null without data; `since` and every `at` are epoch seconds.

Summary::

    {"since", "processes", "requests", "errors", "error_rate", "cache_hits", "cache_hit_rate",
     "prompt_tokens", "completion_tokens", "cost_usd",
     "by_provider": {id: {"requests", "errors", "error_rate", "prompt_tokens",
                          "completion_tokens", "cost_usd", "latency_ms": {"p50", "p95", "p99"}}}}

Detailed::

    {"since", "processes",
     "providers": {id: {"requests", "errors", "errors_by_type": {code: n},
                        "latency_ms": {"p50", "p90", "p95", "p99", "max"}, "ttfb_ms": {same},
                        "models": {provider_model: {"requests", "errors", "cost_usd",
                                                    "latency_ms": {"p50", "p95", "p99"}}}}},
     "models": {public: {"requests", "errors", "fallbacks", "cost_usd"}},
     "retries", "fallbacks", "cache": {"hits", "semantic_hits", "misses"},
     "breakers": {"history": [{"at", "breaker", "from", "to"}]},
     "limits": {"rejections": {"rate", "burst", "quota"},
                "top_users": [{"user", "requests", "cost_usd", "rejections"}]},
     "series": [{"at", "requests", "errors", "cost_usd", "latency_ms_p50", "latency_ms_p95"}]}

A provider's requests and latency are its calls (attempts); see `stellara.telemetry.stats`.
`series` has one entry per 10 seconds over the last 10 minutes, oldest first. `top_users` (the
busiest users, their requests, spend and refusals) is the master key's to read: any other key
sees only its own user's entry, if it is among them.
"""

from __future__ import annotations

from aiohttp import web

from stellara.server.intake import json_response
from stellara.server.spec import OBJECT, Access, Call, Reply, Route


async def summary(call: Call) -> web.StreamResponse:
    return json_response(call, await call.runtime.monitoring.summary())


async def detailed(call: Call) -> web.StreamResponse:
    body = await call.runtime.monitoring.detailed()
    caller = call.caller
    if not caller.is_master:  # other tenants' names and spend are not a tenant's to read
        top = body["limits"]["top_users"]
        body["limits"]["top_users"] = [entry for entry in top if entry["user"] == caller.user]
    return json_response(call, body)


async def reset(call: Call) -> web.StreamResponse:
    since = await call.runtime.monitoring.reset()
    return json_response(call, {"reset": True, "since": since})


ROUTES = (
    Route(
        "GET",
        "/ai-orchestration/stats",
        summary,
        Access.KEYED,
        "Summary since the last reset, for the whole deployment",
        Reply("Summary", OBJECT),
    ),
    Route(
        "GET",
        "/ai-orchestration/monitoring/stats",
        detailed,
        Access.KEYED,
        "Per provider and model latency percentiles, errors by type, retries, fallbacks, "
        "breaker history, limiter rejections, a 10-minute series",
        Reply("Detailed", OBJECT),
    ),
    Route(
        "POST",
        "/ai-orchestration/monitoring/reset",
        reset,
        Access.MASTER,
        "Reset the monitoring stats on every process (master key)",
        Reply("Reset", OBJECT),
    ),
)
