"""Usage and spend for operators (master key): records, CSV export, totals, writer status.

`GET /admin/usage` lists records oldest first: filters `user`, `team`, `model`, `provider`,
`key_id`, `status`, `since` / `until` (ISO-8601 or epoch seconds; `since` ≤ started < `until`),
`limit` (1..10000) and `after` (the previous page's `next_after`); `format=csv` downloads every
matching record instead. `GET /admin/spend` adds `group_by` (user, team, model, provider, key,
or day in UTC). `GET /admin/usage/status` shows the background writer's state.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

from aiohttp import web
from multidict import MultiMapping

from stellara import _json
from stellara.errors import InvalidRequestError, StellaraError
from stellara.pipeline.auth import Authenticator
from stellara.server.errors import error_response
from stellara.server.request import require_master
from stellara.store.usage import UsageWriter
from stellara.store.usage_query import (
    GROUP_BY,
    RECORD_FIELDS,
    GroupBy,
    UsageFilters,
    UsageQuery,
)

logger = logging.getLogger(__name__)

_JSON = {"Content-Type": "application/json"}
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
# Spreadsheets run a cell starting with these as a formula; session ids come from clients.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_SUMMED = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "errors")


class UsageRoutes:
    """The usage routes of one app; `writer` None when this process writes no records."""

    def __init__(self, query: UsageQuery, writer: UsageWriter | None, auth: Authenticator) -> None:
        self._query = query
        self._writer = writer
        self._auth = auth

    def register(self, app: web.Application) -> None:
        app.router.add_get("/admin/usage", self.usage)
        app.router.add_get("/admin/usage/status", self.status)
        app.router.add_get("/admin/spend", self.spend)

    async def usage(self, request: web.Request) -> web.StreamResponse:
        try:
            await require_master(self._auth, request, "Usage records need the master key.")
            params = request.query
            filters = parse_filters(params)
            form = params.get("format", "json")
            if form == "csv":
                return await self._csv(request, filters)
            if form != "json":
                raise InvalidRequestError("format must be json or csv.", param="format")
            limit = _int_param(params, "limit", 1, MAX_LIMIT)
            after = _int_param(params, "after", 0, None)
            records, next_after = await self._query.records(
                filters, DEFAULT_LIMIT if limit is None else limit, after
            )
        except StellaraError as exc:
            return error_response(exc)
        body = {
            "object": "list",
            "data": records,
            "has_more": next_after is not None,
            "next_after": next_after,
        }
        return web.Response(body=_json.dumps(body), headers=_JSON)

    async def spend(self, request: web.Request) -> web.Response:
        try:
            await require_master(self._auth, request, "Spend reports need the master key.")
            filters = parse_filters(request.query)
            group_by = request.query.get("group_by", "user")
            if group_by not in GROUP_BY:
                raise InvalidRequestError(
                    f"group_by must be one of {', '.join(GROUP_BY)}.", param="group_by"
                )
            groups = await self._query.spend(filters, cast(GroupBy, group_by))
        except StellaraError as exc:
            return error_response(exc)
        total = {name: sum(group[name] for group in groups) for name in _SUMMED}
        body = {"group_by": group_by, "data": groups, "total": total}
        return web.Response(body=_json.dumps(body), headers=_JSON)

    async def status(self, request: web.Request) -> web.Response:
        try:
            await require_master(self._auth, request, "The usage writer needs the master key.")
        except StellaraError as exc:
            return error_response(exc)
        body: dict[str, Any] = {"enabled": self._writer is not None}
        if self._writer is not None:
            body.update(self._writer.status())
        return web.Response(body=_json.dumps(body), headers=_JSON)

    async def _csv(self, request: web.Request, filters: UsageFilters) -> web.StreamResponse:
        """Stream every matching record. The first chunk is read before answering, so a store
        that is down gets a 503; one failing later cuts the download short (no final chunk),
        which clients report as an error rather than taking a partial file for a whole one."""
        async with contextlib.aclosing(self._query.iter_records(filters)) as chunks:
            first: list[dict[str, Any]] = await anext(chunks, [])
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/csv; charset=utf-8",
                    "Content-Disposition": 'attachment; filename="usage.csv"',
                }
            )
            await response.prepare(request)
            try:
                await response.write(_csv_lines([RECORD_FIELDS, *_csv_rows(first)]))
                async for chunk in chunks:
                    await response.write(_csv_lines(_csv_rows(chunk)))
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
        yield [_csv_cell(record[field]) for field in RECORD_FIELDS]


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv_lines(rows: Iterable[Iterable[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()
