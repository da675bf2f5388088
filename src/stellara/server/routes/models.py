"""The public models a key may use, in the dialect of the client asking: `GET /v1/models`
and `GET /v1/models/{model_id}`.

OpenAI's and Anthropic's SDKs both call these paths (`models.list()`, `models.retrieve()`),
each expecting its own shapes: a client sending `anthropic-version` gets Anthropic's
(`ModelInfo`, a page with `has_more`, `first_id`, `last_id`, paged by `limit`, `after_id`,
`before_id`), any other OpenAI's. Errors follow the same rule. A model the key may not use is
not listed and is a 404, as an unknown one: a key never learns what else the gateway serves.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from multidict import MultiMapping

from stellara import _json
from stellara.errors import InvalidRequestError, ModelNotFoundError
from stellara.server.intake import response_headers
from stellara.server.schemas import ModelEntry, ModelList
from stellara.server.spec import Access, Call, Dialect, Reply, Route, client_dialect
from stellara.wire import anthropic_models as anthropic

DEFAULT_PAGE = 20
MAX_PAGE = 1000  # Anthropic's bounds on `limit`
OWNER = "stellara"


async def list_models(call: Call) -> web.StreamResponse:
    names = call.runtime.models.visible_to(call.caller)
    created = int(call.runtime.clock.time())
    if client_dialect(call.request) is Dialect.ANTHROPIC:
        query = call.request.query
        page, has_more = _page(_in_lifecycles(names, query), query)
        infos = [_model_info(name, created) for name in page]
        first, last = (page[0], page[-1]) if page else (None, None)
        return _answer(call, anthropic.ModelPage(infos, has_more, first, last))
    data = [ModelEntry(name, "model", created, OWNER) for name in names]
    return _answer(call, ModelList("list", data))


async def retrieve_model(call: Call) -> web.StreamResponse:
    name = call.request.match_info["model_id"]
    if not call.caller.may_use(name) or call.runtime.models.get(name) is None:
        raise ModelNotFoundError(
            f"The model {name!r} does not exist or you do not have access to it.", param="model"
        )
    created = int(call.runtime.clock.time())
    if client_dialect(call.request) is Dialect.ANTHROPIC:
        return _answer(call, _model_info(name, created))
    return _answer(call, ModelEntry(name, "model", created, OWNER))


def _answer(call: Call, body: object) -> web.Response:
    return web.Response(body=_json.encode(body), headers=response_headers(call, is_json=True))


def _model_info(name: str, created: int) -> anthropic.ModelInfo:
    created_at = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return anthropic.ModelInfo("model", name, name, created_at, "active")


def _in_lifecycles(names: list[str], query: MultiMapping[str]) -> list[str]:
    """`names` unless `lifecycle` (`lifecycle[]` from the SDK) leaves out `active`, the stage
    of every public model."""
    asked = [*query.getall("lifecycle[]", ()), *query.getall("lifecycle", ())]
    for stage in asked:
        if stage not in anthropic.LIFECYCLES:
            raise InvalidRequestError(
                f"lifecycle: {stage!r} is not one of {', '.join(anthropic.LIFECYCLES)}.",
                param="lifecycle",
            )
    return names if not asked or "active" in asked else []


def _page(names: list[str], query: MultiMapping[str]) -> tuple[list[str], bool]:
    """The page of `names` the query asks for, and whether more lie beyond it: after
    `after_id`, or the last `limit` before `before_id` (then "more" lie before it)."""
    limit = _limit(query.get("limit"))
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise InvalidRequestError("Give after_id or before_id, not both.", param="before_id")
    if before is not None:
        end = _position(names, before, "before_id")
        start = max(0, end - limit)
        return names[start:end], start > 0
    start = 0 if after is None else _position(names, after, "after_id") + 1
    return names[start : start + limit], start + limit < len(names)


def _position(names: list[str], name: str, param: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        message = f"{param}: no model {name!r} in this list."
        raise InvalidRequestError(message, param=param) from None


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequestError(f"limit: a whole number from 1 to {MAX_PAGE}.", param="limit")
    return limit


ROUTES = (
    Route(
        "GET",
        "/v1/models",
        list_models,
        Access.KEYED,
        "The public models this key may use. OpenAI's list; to a client sending "
        "`anthropic-version`, Anthropic's page (`limit` 1-1000, `after_id`, `before_id`, "
        "`lifecycle`) of `{type, id, display_name, created_at, lifecycle}`",
        Reply(
            "Model list (OpenAI's shape; Anthropic's page for Anthropic clients)",
            ModelList,
            anthropic=anthropic.ModelPage,
        ),
        query=("limit", "after_id", "before_id", "lifecycle"),
        speaks_client_dialect=True,
    ),
    Route(
        "GET",
        "/v1/models/{model_id:.+}",
        retrieve_model,
        Access.KEYED,
        "One public model this key may use, in the client's dialect (as `GET /v1/models`)",
        Reply(
            "The model (OpenAI's shape; Anthropic's for Anthropic clients)",
            ModelEntry,
            anthropic=anthropic.ModelInfo,
        ),
        errors={404: "No such model, or the key may not use it"},
        speaks_client_dialect=True,
    ),
)
