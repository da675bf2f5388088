"""The API's own description (`GET /openapi.json`) and a page that renders it (`GET /docs`).

Schemas come from the very msgspec structs that decode requests, so the description cannot
drift from what the server accepts.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

import msgspec
from aiohttp import web

from stellara import __version__, _json
from stellara.providers.anthropic import wire
from stellara.schema.chat import ChatCompletion, ChatCompletionChunk, ChatRequest
from stellara.schema.embeddings import EmbeddingsRequest, EmbeddingsResponse
from stellara.server.routes_cache import ClearBody, WarmBody
from stellara.server.routes_orchestration import GenerateRequest
from stellara.store.admin import KEY_FIELDS
from stellara.store.usage_query import GROUP_BY, UsageFilters


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(msgspec.Struct):
    """The OpenAI error body every OpenAI-dialect route answers errors with."""

    error: ErrorDetail


class ModelEntry(msgspec.Struct):
    id: str
    object: str
    created: int
    owned_by: str


class ModelList(msgspec.Struct):
    object: str
    data: list[ModelEntry]


class HealthStatus(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, dict[str, Any]]


class LimitEntry(msgspec.Struct):
    """One limit's use; `reset_at` (ISO-8601 UTC) and `reset_at_epoch_s` are the same instant,
    when `remaining` next grows. `window_s` only for sliding windows."""

    used: float
    limit: float
    remaining: float
    reset_at: str
    reset_at_epoch_s: float
    window_s: float | None = None


class LimitStatus(msgspec.Struct):
    """Per window (`daily`/`monthly`/`session`, or `rate`/`burst`) and dimension."""

    user: str
    tier: str | None
    shadow: bool
    limited: bool
    windows: dict[str, dict[str, LimitEntry]]


class LimitReset(msgspec.Struct):
    user: str
    reset: str


_SCHEMAS = (
    ChatRequest,
    ChatCompletion,
    ChatCompletionChunk,
    ErrorBody,
    ModelList,
    HealthStatus,
    Readiness,
    LimitStatus,
    LimitReset,
    EmbeddingsRequest,
    EmbeddingsResponse,
    WarmBody,
    ClearBody,
    GenerateRequest,
)
# Anthropic's types share names with the canonical ones (Usage, Message, ErrorDetail), so their
# components carry a prefix rather than msgspec's module-qualified names for both.
_ANTHROPIC_PREFIX = "Anthropic"
_ANTHROPIC_SCHEMAS = (wire.MessagesRequest, wire.Message, wire.StreamEvent, wire.ErrorEvent)
_ERRORS = {
    "400": "Invalid request",
    "401": "Missing or invalid API key",
    "403": "The key may not use this model",
    "404": "Unknown model",
    "413": "Body larger than server.max_body_bytes",
    "429": "Rate limit (`rate_limit_exceeded`) or quota (`insufficient_quota`); see Retry-After",
    "502": "Provider error after all attempts",
    "503": "No healthy provider, or state backend down with `on_failure: closed`",
    "504": "Timed out",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _errors() -> dict[str, Any]:
    return {
        code: {"description": text, "content": _json_content("ErrorBody")}
        for code, text in _ERRORS.items()
    }


def _anthropic_errors() -> dict[str, Any]:
    content = _json_content(f"{_ANTHROPIC_PREFIX}ErrorEvent")
    return {code: {"description": text, "content": content} for code, text in _ERRORS.items()}


def _anthropic_components() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        _ANTHROPIC_SCHEMAS, ref_template=f"#/components/schemas/{_ANTHROPIC_PREFIX}{{name}}"
    )
    return {f"{_ANTHROPIC_PREFIX}{name}": schema for name, schema in components.items()}


def _messages_path() -> dict[str, Any]:
    prefix = _ANTHROPIC_PREFIX
    ok = {
        "description": "A message, or with `stream: true` an SSE stream of Anthropic events "
        "(`event: <type>` + `data: <json>`), ending with `message_stop` or `error`",
        "content": {
            **_json_content(f"{prefix}Message"),
            "text/event-stream": {"schema": {"anyOf": _stream_event_refs()}},
        },
    }
    return {
        "post": {
            "summary": "Anthropic Messages (`max_tokens` required; any `anthropic-version`)",
            "security": [{"bearer": []}, {"apiKey": []}],
            "requestBody": {
                "required": True,
                "content": _json_content(f"{prefix}MessagesRequest"),
            },
            "responses": {"200": ok, **_anthropic_errors()},
        }
    }


def _limits_paths() -> dict[str, Any]:
    """The quota and rate-limit status and reset routes (routes_management)."""
    auth_errors = {code: _errors()[code] for code in ("401", "503")}
    auth_errors["403"] = {
        "description": "A user key reading another user, or a reset without the master key",
        "content": _json_content("ErrorBody"),
    }
    paths: dict[str, Any] = {}
    for path, what in (("quotas", "Quota"), ("rate-limits", "Rate-limit")):
        base = f"/ai-orchestration/{path}/{{userId}}"
        user = [{"name": "userId", "in": "path", "required": True, "schema": {"type": "string"}}]
        paths[base] = {
            "get": {
                "summary": f"{what} use per window and dimension (own user, or master key)",
                "security": [{"bearer": []}],
                "parameters": user,
                "responses": {
                    "200": {"description": "Status", "content": _json_content("LimitStatus")},
                    **auth_errors,
                },
            }
        }
        paths[f"{base}/reset"] = {
            "post": {
                "summary": f"Forget the user's {what.lower()} use (master key)",
                "security": [{"bearer": []}],
                "parameters": user,
                "responses": {
                    "200": {"description": "Reset", "content": _json_content("LimitReset")},
                    **auth_errors,
                },
            }
        }
    return paths


def _cache_paths() -> dict[str, Any]:
    """Cache stats, clear and warm (routes_cache); master key only."""
    master = {code: _errors()[code] for code in ("400", "401", "403")}
    ok = {"description": "Done", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "/ai-orchestration/cache/stats": {
            "get": {
                "summary": "Entries, bytes, hits, misses, hit rate per cache level",
                "security": [{"bearer": []}],
                "responses": {"200": ok, **master},
            },
        },
        "/ai-orchestration/cache/clear": {
            "post": {
                "summary": "Clear everything, or one user's and/or one model's entries",
                "security": [{"bearer": []}],
                "requestBody": {"required": False, "content": _json_content("ClearBody")},
                "responses": {"200": ok, **master},
            },
        },
        "/ai-orchestration/cache/warm": {
            "post": {
                "summary": "Store answers so the same requests afterwards are hits",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": _json_content("WarmBody")},
                "responses": {"200": ok, **master},
            },
        },
    }


def _admin_paths() -> dict[str, Any]:
    """Virtual keys, users, usage and spend (routes_keys, routes_usage); master key only.
    Field, filter and grouping names come from the code that checks them."""
    obj = {"application/json": {"schema": {"type": "object"}}}
    master = {code: _errors()[code] for code in ("400", "401", "403")}
    master["503"] = {"description": "The SQL store is unavailable", "content": obj}
    not_found = {"404": {"description": "No such key or user", "content": obj}}
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    key_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {name: {} for name in sorted(KEY_FIELDS)},
                    "additionalProperties": False,
                }
            }
        },
    }

    def path_param(name: str) -> list[dict[str, Any]]:
        return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]

    def query(*names: str) -> list[dict[str, Any]]:
        return [{"name": n, "in": "query", "schema": {"type": "string"}} for n in names]

    def op(summary: str, status: str = "200", **extra: Any) -> dict[str, Any]:
        ok = {status: {"description": summary, "content": obj}}
        by_path = any(p["in"] == "path" for p in extra.get("parameters", ()))
        responses = {**ok, **master, **(not_found if by_path else {})}
        return {"summary": summary, "security": bearer, "responses": responses, **extra}

    filters = tuple(field.name for field in dataclasses.fields(UsageFilters))
    key_id = path_param("key_id")
    return {
        "/admin/keys": {
            "post": op(
                "Create a virtual key; the key is shown only here", "201", requestBody=key_body
            ),
            "get": op(
                "Virtual keys (not the keys themselves)",
                parameters=query("user", "include_revoked"),
            ),
        },
        "/admin/keys/{key_id}": {
            "get": op("One virtual key", parameters=key_id),
            "patch": op(
                "Change a key (fields set; null clears)", parameters=key_id, requestBody=key_body
            ),
            "delete": op("Revoke a key: refused at once on every process", parameters=key_id),
        },
        "/admin/users": {"get": op("Users, their tier, teams and key counts")},
        "/admin/users/{user}": {
            "get": op("One user and their keys", parameters=path_param("user"))
        },
        "/admin/usage": {
            "get": op(
                "Usage records, oldest first (JSON pages, or every record with format=csv)",
                parameters=query(*filters, "limit", "after", "format"),
            )
        },
        "/admin/spend": {
            "get": op(
                f"Requests, tokens and cost grouped by {' | '.join(GROUP_BY)}",
                parameters=query(*filters, "group_by"),
            )
        },
        "/admin/usage/status": {"get": op("The usage writer: pending, written, dropped, healthy")},
        "/admin/quotas/rebuild": {
            "post": op(
                "Rebuild today's and this month's quota use from the usage records "
                '(after a state-backend loss); optional body {"users": [...]}'
            )
        },
    }


def _observability_paths() -> dict[str, Any]:
    """Metrics and the monitoring API (routes_metrics, routes_monitoring)."""
    obj = {"application/json": {"schema": {"type": "object"}}}
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    keyed = {"401": _errors()["401"]}
    master = {code: _errors()[code] for code in ("401", "403")}
    return {
        "/metrics": {
            "get": {
                "summary": "Prometheus exposition (requests, latency, tokens, cost, breakers, "
                "limits, cache, in-flight); no key",
                "responses": {"200": {"description": "text/plain; version=0.0.4"}},
            }
        },
        "/ai-orchestration/stats": {
            "get": {
                "summary": "Summary since the last reset, for the whole deployment",
                "security": bearer,
                "responses": {"200": {"description": "Summary", "content": obj}, **keyed},
            }
        },
        "/ai-orchestration/monitoring/stats": {
            "get": {
                "summary": "Per provider and model latency percentiles, errors by type, "
                "retries, fallbacks, breaker history, limiter rejections, a 10-minute series",
                "security": bearer,
                "responses": {"200": {"description": "Detailed", "content": obj}, **keyed},
            }
        },
        "/ai-orchestration/monitoring/reset": {
            "post": {
                "summary": "Reset the monitoring stats on every process (master key)",
                "security": bearer,
                "responses": {"200": {"description": "Reset", "content": obj}, **master},
            }
        },
    }


def _dashboard_paths() -> dict[str, Any]:
    """The dashboard (routes_dashboard): its page, sign-in and JSON feed; a session cookie,
    not a bearer key, after signing in with the master key."""
    html = {"description": "text/html"}
    redirect = {"description": "To /dashboard, the session cookie set (or cleared)"}
    name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "/dashboard": {
            "get": {
                "summary": "The live dashboard, or its sign-in form; `?key=<master key>` signs in "
                "and redirects to /dashboard without the key",
                "responses": {"200": html, "303": redirect},
            }
        },
        "/dashboard/login": {
            "post": {
                "summary": "Sign in with the master key (form field `key`): an HttpOnly, "
                "SameSite=Strict session cookie for 12 h",
                "responses": {"303": redirect, "200": {"description": "The form, with the error"}},
            }
        },
        "/dashboard/logout": {
            "post": {"summary": "Sign out", "responses": {"303": redirect}},
        },
        "/dashboard/data": {
            "get": {
                "summary": "The page's feed: monitoring, health and breakers, cache, the busiest "
                "users' limits, server (session cookie)",
                "responses": {
                    "200": {
                        "description": "Feed",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "401": {"description": "Not signed in", "content": _json_content("ErrorBody")},
                    "503": {"description": "The data did not come in time"},
                },
            }
        },
        "/dashboard/static/{name}": {
            "get": {
                "summary": "The page's script, style sheet and icon",
                "parameters": name,
                "responses": {"200": {"description": "The file"}, "404": _errors()["404"]},
            }
        },
    }


def _orchestration_paths() -> dict[str, Any]:
    """generate, generate-with-fallback, health and circuit breakers (routes_orchestration)."""
    obj = {"application/json": {"schema": {"type": "object"}}}
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    keyed = {code: _errors()[code] for code in ("401",)}
    master = {code: _errors()[code] for code in ("401", "403")}

    def generate(summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "security": bearer,
                "requestBody": {"required": True, "content": _json_content("GenerateRequest")},
                "responses": {
                    "200": {"description": "chat.completion + orchestration", "content": obj},
                    **_errors(),
                },
            }
        }

    def get(summary: str, errors: dict[str, Any]) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "security": bearer,
                "responses": {"200": {"description": summary, "content": obj}, **errors},
            }
        }

    reset = {
        "post": {
            "summary": "Close one circuit breaker (master key)",
            "security": bearer,
            "parameters": [
                {"name": "breaker_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {"description": "Reset", "content": obj},
                "404": _errors()["404"],
                **master,
            },
        }
    }
    return {
        "/ai-orchestration/generate": generate("Chat with routing control and a report"),
        "/ai-orchestration/generate-with-fallback": generate(
            "Chat that always answers 200 (degraded: true when every route failed)"
        ),
        "/ai-orchestration/health": get("Per-provider health", keyed),
        "/ai-orchestration/healthy-providers": get("Providers usable now", keyed),
        "/ai-orchestration/circuit-breakers": get("Circuit breakers (master key)", master),
        "/ai-orchestration/circuit-breakers/{breaker_id}/reset": reset,
    }


def _stream_event_refs() -> list[dict[str, str]]:
    names = [t.__name__ for t in wire.StreamEvent.__args__]
    return [_ref(f"{_ANTHROPIC_PREFIX}{name}") for name in names]


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route."""
    _, components = msgspec.json.schema_components(
        _SCHEMAS, ref_template="#/components/schemas/{name}"
    )
    components.update(_anthropic_components())
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    chat_ok = {
        "description": "A chat.completion, or with `stream: true` an SSE stream of "
        "chat.completion.chunk events ending with `data: [DONE]`, or with an error event "
        "when the provider breaks off. The `text/event-stream` schema is each event's `data`",
        "content": {
            **_json_content("ChatCompletion"),
            "text/event-stream": {
                "schema": {"anyOf": [_ref("ChatCompletionChunk"), _ref("ErrorBody")]}
            },
        },
    }
    paths: dict[str, Any] = {
        "/v1/chat/completions": {
            "post": {
                "summary": "OpenAI Chat Completions",
                "security": bearer,
                "requestBody": {"required": True, "content": _json_content("ChatRequest")},
                "responses": {"200": chat_ok, **_errors()},
            }
        },
        "/v1/messages": _messages_path(),
        "/v1/embeddings": {
            "post": {
                "summary": "OpenAI Embeddings",
                "security": bearer,
                "requestBody": {"required": True, "content": _json_content("EmbeddingsRequest")},
                "responses": {
                    "200": {
                        "description": "Embeddings",
                        "content": _json_content("EmbeddingsResponse"),
                    },
                    **_errors(),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The public models this key may use",
                "security": bearer,
                "responses": {
                    "200": {"description": "Model list", "content": _json_content("ModelList")},
                    "401": _errors()["401"],
                },
            }
        },
        **_limits_paths(),
        **_cache_paths(),
        **_orchestration_paths(),
        **_admin_paths(),
        **_observability_paths(),
        **_dashboard_paths(),
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "responses": {
                    "200": {"description": "Up", "content": _json_content("HealthStatus")}
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness",
                "responses": {
                    "200": {"description": "Ready", "content": _json_content("Readiness")},
                    "503": {"description": "Not ready", "content": _json_content("Readiness")},
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1"}},
            }
        },
        "/docs": {
            "get": {
                "summary": "This document as a web page",
                "responses": {"200": {"description": "HTML"}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stellara",
            "version": __version__,
            "description": "An AI gateway speaking the OpenAI and Anthropic APIs.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }


def register(app: web.Application) -> None:
    document = _json.dumps(build_openapi())
    page = resources.files("stellara.server").joinpath("docs.html").read_bytes()

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
