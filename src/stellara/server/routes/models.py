"""The public models a key may use, in the dialect of the client asking: `GET /v1/models`
and `GET /v1/models/{model_id}`, and Gemini's own `GET /v1beta/models[/{model}]`.

OpenAI's, Anthropic's and Google's SDKs all call `/v1/models` (`models.list()`,
`models.retrieve()` / `get()`; google-genai's default API version is v1), each expecting its
own shapes: a client sending `anthropic-version` gets Anthropic's (`ModelInfo`, a page with
`has_more`, `first_id`, `last_id`, paged by `limit`, `after_id`, `before_id`), a Gemini client
(`x-goog-api-key`, `?key=` or `x-goog-api-client`) Gemini's (`Model`, paged by `pageSize`,
`pageToken`), any other OpenAI's. Errors follow the same rule. A model the key may not use is
not listed and is a 404, as an unknown one: a key never learns what else the gateway serves.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from multidict import MultiMapping

from stellara import _json
from stellara.errors import InvalidRequestError, ModelNotFoundError
from stellara.inbound.gemini import PublicModelInfo, model_page, model_resource
from stellara.providers.base import EmbeddingsAdapter
from stellara.server.intake import response_headers
from stellara.server.schemas import ModelEntry, ModelList
from stellara.server.spec import Access, Call, Dialect, Reply, Route, client_dialect
from stellara.wire import anthropic_models as anthropic
from stellara.wire import google_inbound as gemini

DEFAULT_PAGE = 20
MAX_PAGE = 1000  # Anthropic's bounds on `limit`
OWNER = "stellara"


async def list_models(call: Call) -> web.StreamResponse:
    names = call.runtime.models.visible_to(call.caller)
    created = int(call.runtime.clock.time())
    dialect = client_dialect(call.request)
    if dialect is Dialect.GEMINI:
        return _gemini_page(call, names)
    if dialect is Dialect.ANTHROPIC:
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
    dialect = client_dialect(call.request)
    if dialect is Dialect.GEMINI:
        return _answer(call, model_resource(_gemini_info(call, name)))
    if dialect is Dialect.ANTHROPIC:
        return _answer(call, _model_info(name, created))
    return _answer(call, ModelEntry(name, "model", created, OWNER))


async def list_gemini_models(call: Call) -> web.StreamResponse:
    return _gemini_page(call, call.runtime.models.visible_to(call.caller))


async def get_gemini_model(call: Call) -> web.StreamResponse:
    public = call.runtime.models.resolve(call.caller, call.request.match_info["model"])
    return _answer(call, model_resource(_gemini_info(call, public.name)))


def _gemini_page(call: Call, names: list[str]) -> web.Response:
    query = call.request.query
    infos = [_gemini_info(call, name) for name in names]
    return _answer(call, model_page(infos, query.get("pageSize"), query.get("pageToken")))


def _gemini_info(call: Call, name: str) -> PublicModelInfo:
    public = call.runtime.models.get(name)
    assert public is not None, "visible and resolved names are configured models"
    first = public.targets[0]
    entry = call.runtime.catalog.lookup(first.provider_type, first.model)
    return PublicModelInfo(
        name,
        embeds=any(isinstance(target.adapter, EmbeddingsAdapter) for target in public.targets),
        input_token_limit=entry.context_window if entry else None,
        output_token_limit=entry.max_output_tokens if entry else None,
    )


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
        "`lifecycle`) of `{type, id, display_name, created_at, lifecycle}`; to a Gemini "
        "client, Gemini's (`pageSize`, `pageToken`)",
        Reply(
            "Model list (OpenAI's shape; Anthropic's or Gemini's page for their clients)",
            ModelList,
            anthropic=anthropic.ModelPage,
            gemini=gemini.ListModelsResponse,
        ),
        query=("limit", "after_id", "before_id", "lifecycle", "pageSize", "pageToken"),
        speaks_client_dialect=True,
    ),
    Route(
        "GET",
        "/v1/models/{model_id:.+}",
        retrieve_model,
        Access.KEYED,
        "One public model this key may use, in the client's dialect (as `GET /v1/models`)",
        Reply(
            "The model (OpenAI's shape; Anthropic's or Gemini's for their clients)",
            ModelEntry,
            anthropic=anthropic.ModelInfo,
            gemini=gemini.Model,
        ),
        errors={404: "No such model, or the key may not use it"},
        speaks_client_dialect=True,
    ),
    Route(
        "GET",
        "/v1beta/models",
        list_gemini_models,
        Access.KEYED,
        "The public models this key may use, as Gemini models (`pageSize`, `pageToken`)",
        Reply("`{models, nextPageToken}`", gemini.ListModelsResponse),
        dialect=Dialect.GEMINI,
        query=("pageSize", "pageToken"),
    ),
    Route(
        "GET",
        "/v1beta/models/{model:[^/:]+}",  # `models/x:action` is an action, not a model
        get_gemini_model,
        Access.KEYED,
        "One public model, as a Gemini model",
        Reply("A Model", gemini.Model),
        dialect=Dialect.GEMINI,
    ),
)
