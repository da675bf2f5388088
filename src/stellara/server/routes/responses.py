"""The OpenAI Responses dialect: `POST /v1/responses` and its stored responses.

A request is translated to the canonical chat request and answered by the same gateway as
`/v1/chat/completions` (limits, cache, routing, fallbacks, usage records), whatever provider
serves it; the answer goes back as a `Response` or its typed stream events. With `store: true`
(OpenAI's default) the answer's write to the store (`pipeline.responses`) is sent before its
last byte goes out, so `previous_response_id` continues it at once, on any process sharing the
state backend; the answer does not wait for the backend's reply.

Storing is part of the answer but never costs it: when the write cannot be sent (the state
backend is down, or the response alone is larger than `responses.max_stored_bytes`) the client
still gets its answer, with `store: false` saying that it was not kept, and the gateway logs
why (as it does for a write that fails after the answer left).
"""

from __future__ import annotations

import logging
import secrets
from typing import get_args

from aiohttp import web

from stellara import _json
from stellara.errors import InvalidRequestError, StellaraError
from stellara.inbound.responses import (
    PARAM_NAMES,
    ResponsesStreamWriter,
    conversation,
    input_items,
    to_chat_request,
    to_response,
)
from stellara.pipeline.responses import StoredTurn
from stellara.principal import Principal
from stellara.server.intake import open_model_call, response_headers
from stellara.server.spec import OBJECT, Access, Call, Reply, Route
from stellara.server.sse import ResponsesFrames, relay
from stellara.wire import responses as wire

logger = logging.getLogger(__name__)

MAX_LIST_LIMIT = 100


async def create(call: Call) -> web.StreamResponse:
    ctx, request = await open_model_call(call, wire.request_decoder)
    runtime = call.runtime
    stored = runtime.responses
    history = await stored.conversation(request.previous_response_id, ctx.principal)
    response_id = f"resp_{secrets.token_hex(16)}"
    items = input_items(request, response_id=response_id)
    chat = to_chat_request(request, items, history)
    ctx.param_names = PARAM_NAMES
    created_at = int(ctx.started_epoch_s)
    will_store = stored.will_store(request)

    async def keep(response: wire.Response) -> None:
        if will_store:
            await _keep(call, StoredTurn(response, items, conversation(history, items, response)))

    if chat.is_streaming:
        stream = await runtime.gateway.open_stream(ctx, chat)
        writer = ResponsesStreamWriter(
            request, response_id=response_id, created_at=created_at, store=will_store
        )
        return await relay(call, stream, ResponsesFrames(writer, runtime.clock, keep))
    completion = await runtime.gateway.complete(ctx, chat)
    response = to_response(
        completion,
        request,
        response_id=response_id,
        created_at=created_at,
        store=will_store,
        completed_at=int(runtime.clock.time()),
    )
    await keep(response)
    return web.Response(body=_json.encode(response), headers=response_headers(call, is_json=True))


async def _keep(call: Call, turn: StoredTurn) -> None:
    """Store `turn`; on failure answer it anyway, marked as not stored."""
    try:
        await call.runtime.responses.save(turn, _caller(call).user)
    except StellaraError as exc:
        turn.response.store = False
        logger.warning(
            "response %s of request %s not stored: %s", turn.response.id, call.request_id, exc
        )


async def retrieve(call: Call) -> web.StreamResponse:
    """The stored response. `stream=true` (replaying a background response's events) is
    refused: responses here are stored once complete, never run in the background."""
    if call.request.query.get("stream", "false").lower() != "false":
        raise InvalidRequestError(
            "stream=true replays background responses, which this gateway does not run.",
            param="stream",
        )
    turn = await call.runtime.responses.find(_response_id(call), _caller(call))
    return _json_answer(call, _json.encode(turn.response))


async def delete(call: Call) -> web.StreamResponse:
    response_id = _response_id(call)
    await call.runtime.responses.delete(response_id, _caller(call))
    body = {"id": response_id, "object": "response.deleted", "deleted": True}
    return _json_answer(call, _json.dumps(body))


async def list_input_items(call: Call) -> web.StreamResponse:
    """This response's input items, newest first unless `order=asc`, `limit` a page (20 by
    default), starting after the item `after`."""
    query = call.request.query
    limit = _limit(query.get("limit"))
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("order must be 'asc' or 'desc'.", param="order")
    turn = await call.runtime.responses.find(_response_id(call), _caller(call))
    items = turn.items if order == "asc" else turn.items[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item.id for item in items]
        if after not in ids:
            raise InvalidRequestError(f"No input item '{after}' in this response.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    body = wire.InputItemList(
        data=page,
        first_id=(page[0].id or "") if page else "",  # stored items all have ids
        last_id=(page[-1].id or "") if page else "",
        has_more=len(items) > limit,
    )
    return _json_answer(call, _json.encode(body))


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidRequestError(
            f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}.", param="limit"
        )
    return limit


def _response_id(call: Call) -> str:
    return call.request.match_info["response_id"]


def _caller(call: Call) -> Principal:
    assert call.principal is not None  # every route here needs a key
    return call.principal


def _json_answer(call: Call, body: bytes) -> web.Response:
    return web.Response(body=body, headers=response_headers(call, is_json=True))


_NOT_FOUND = {404: "No stored response of that id for this key's user (or it expired)"}
ROUTES = (
    Route(
        "POST",
        "/v1/responses",
        create,
        Access.MODEL,
        "OpenAI Responses (any provider; `store: true` keeps it for `previous_response_id`)",
        Reply(
            "A response, or with `stream: true` an SSE stream of typed response events "
            "(`event: <type>` + `data: <json>`, each with its `sequence_number`), ending with "
            "`response.completed`, `response.incomplete`, or `error` then `response.failed`",
            wire.Response,
            stream=get_args(wire.StreamEvent),
        ),
        body=wire.ResponsesRequest,
        example={"model": "my-model", "input": "Hello!"},
        errors={
            404: "`previous_response_id` names no stored response of this key's user",
            413: "The response is larger than the whole store (`responses.max_stored_bytes`)",
        },
    ),
    Route(
        "GET",
        "/v1/responses/{response_id}",
        retrieve,
        Access.KEYED,
        "A stored response (this key's user's; the master key's: any)",
        Reply("The response", wire.Response),
        query=("stream",),
        errors=_NOT_FOUND,
    ),
    Route(
        "DELETE",
        "/v1/responses/{response_id}",
        delete,
        Access.KEYED,
        "Delete a stored response, on every process sharing the state backend",
        Reply("`{id, object: response.deleted, deleted: true}`", OBJECT),
        errors=_NOT_FOUND,
    ),
    Route(
        "GET",
        "/v1/responses/{response_id}/input_items",
        list_input_items,
        Access.KEYED,
        "A stored response's input items, paged (`limit` 1-100, `order` asc|desc, `after`)",
        Reply("A list of input items", wire.InputItemList),
        query=("limit", "order", "after"),
        errors=_NOT_FOUND,
    ),
)
