"""Usage and spend for operators (master key): records, CSV export, totals, writer status.

`GET /admin/usage` lists records oldest first: filters `user`, `team`, `model`, `provider`,
`key_id`, `endpoint` (the inbound API's path, such as `/v1/messages`), `status`, `since` /
`until` (ISO-8601 or epoch seconds; `since` ≤ started < `until`), `limit` (1..10000) and `after`
(the previous page's `next_after`); `format=csv` downloads every matching record instead.
`GET /admin/spend` adds `group_by` (user, team, model, provider, key, endpoint, or day in UTC).
`GET /admin/usage/status` shows the background writer's state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

from aiohttp import web
from multidict import MultiMapping

from stellara.errors import InvalidRequestError, StellaraError
from stellara.server.intake import json_response
from stellara.server.spec import OBJECT, Access, Call, Reply, Route
from stellara.server.spreadsheet import csv_lines
from stellara.store.usage_query import (
    GROUP_BY,
    RECORD_FIELDS,
    GroupBy,
    UsageFilters,
)

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
_SUMMED = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "errors",
)


async def usage(call: Call) -> web.StreamResponse:
    params = call.request.query
    filters = parse_filters(params)
    form = params.get("format", "json")
    if form == "csv":
        return await _csv(call, filters)
    if form != "json":
        raise InvalidRequestError("format must be json or csv.", param="format")
    limit = _int_param(params, "limit", 1, MAX_LIMIT)
    after = _int_param(params, "after", 0, None)
    records, next_after = await call.runtime.usage_query.records(
        filters, DEFAULT_LIMIT if limit is None else limit, after
    )
    body = {
        "object": "list",
        "data": records,
        "has_more": next_after is not None,
        "next_after": next_after,
    }
    return json_response(call, body)


async def spend(call: Call) -> web.StreamResponse:
    filters = parse_filters(call.request.query)
    group_by = call.request.query.get("group_by", "user")
    if group_by not in GROUP_BY:
        raise InvalidRequestError(
            f"group_by must be one of {', '.join(GROUP_BY)}.", param="group_by"
        )
    groups = await call.runtime.usage_query.spend(filters, cast(GroupBy, group_by))
    total = {name: sum(group[name] for group in groups) for name in _SUMMED}
    return json_response(call, {"group_by": group_by, "data": groups, "total": total})


async def status(call: Call) -> web.StreamResponse:
    return json_response(call, {"enabled": True, **call.runtime.usage.status()})


async def _csv(call: Call, filters: UsageFilters) -> web.StreamResponse:
    """Stream every matching record. The first chunk is read before answering, so a store
    that is down gets a 503; one failing later cuts the download short (no final chunk),
    which clients report as an error rather than taking a partial file for a whole one."""
    request = call.request
    async with contextlib.aclosing(call.runtime.usage_query.iter_records(filters)) as chunks:
        first: list[dict[str, Any]] = await anext(chunks, [])
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": 'attachment; filename="usage.csv"',
            }
        )
        await response.prepare(request)
        try:
            await response.write(csv_lines([RECORD_FIELDS, *_csv_rows(first)]))
            async for chunk in chunks:
                await response.write(csv_lines(_csv_rows(chunk)))
        except StellaraError as exc:
            logger.warning("usage export cut short: %s", exc.message)
            if request.transport is not None:
                request.transport.abort()
            return response
        except ConnectionResetError:  # the client left
            return response
    await response.write_eof()
    return response


def parse_filters(params: MultiMapping[str]) -> UsageFilters:
    """The filters in a query string; 400 for a malformed value."""
    status = _int_param(params, "status", 100, 599)
    since = _time_param(params, "since")
    until = _time_param(params, "until")
    if since is not None and until is not None and until < since:
        raise InvalidRequestError("until must not be before since.", param="until")
    return UsageFilters(
        user=params.get("user"),
        team=params.get("team"),
        model=params.get("model"),
        provider=params.get("provider"),
        key_id=params.get("key_id"),
        endpoint=params.get("endpoint"),
        since=since,
        until=until,
        status=status,
    )


def _int_param(params: MultiMapping[str], name: str, low: int, high: int | None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        raise InvalidRequestError(f"{name} must be an integer {bounds}.", param=name)
    return value


def _time_param(params: MultiMapping[str], name: str) -> float | None:
    """Epoch seconds, or an ISO-8601 date or time (UTC unless it names its offset)."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
        raise InvalidRequestError(f"{name} must be a finite number of seconds.", param=name)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequestError(
            f"{name} must be epoch seconds or an ISO-8601 time, such as 2025-01-31T12:00:00Z.",
            param=name,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _csv_rows(records: Iterable[dict[str, Any]]) -> Iterable[list[Any]]:
    for record in records:
        yield [record[field] for field in RECORD_FIELDS]


_FILTERS = tuple(field.name for field in dataclasses.fields(UsageFilters))
_STORE = {503: "The SQL store is unavailable"}
ROUTES = (
    Route(
        "GET",
        "/admin/usage",
        usage,
        Access.MASTER,
        "Usage records, oldest first (JSON pages, or every record with format=csv)",
        Reply("Records", OBJECT),
        query=(*_FILTERS, "limit", "after", "format"),
        errors=_STORE,
    ),
    Route(
        "GET",
        "/admin/usage/status",
        status,
        Access.MASTER,
        "The usage writer: pending, written, dropped, healthy",
        Reply("Status", OBJECT),
    ),
    Route(
        "GET",
        "/admin/spend",
        spend,
        Access.MASTER,
        f"Requests, tokens and cost grouped by {' | '.join(GROUP_BY)}",
        Reply("Totals per group", OBJECT),
        query=(*_FILTERS, "group_by"),
        errors=_STORE,
    ),
)
