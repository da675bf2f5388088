"""Who may call what: every route the gateway serves, for every kind of caller.

Each route's access is declared once, in the route table (`stellara.server.routes`); this
test calls every served route as every caller and checks the answer is the one its declared
access promises, and `test_the_table_guards_what_must_be_guarded` checks the declarations
themselves against the rules below. A new route fails `test_every_route_is_sampled` until
`SAMPLES` says how to call it.

Callers: no key, a wrong key, a revoked virtual key, alice's key, bob's key (another user)
and the master key. Access classes (`stellara.server.spec.Access`):

* `public`: no key needed (liveness, readiness, the API description, metrics, the dashboard's
  login form and static files, its login/logout forms, which take the key in a form);
* `model`: any valid non-master key; the master key gets 403 unless
  `server.master_key_model_calls`;
* `keyed`: any valid key, the master key included (statistics, provider health, `/v1/models`);
* `own_user`: the user's own key or the master key; another user's key gets 403;
* `master`: the master key only (every POST management route, breakers, cache, `/admin/*`);
* `cookie`: the dashboard's feeds, opened by its sign-in cookie only: every bearer key is 401.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from stellara.server.boundary import RouteHandler
from stellara.server.routes import ROUTES
from stellara.server.spec import Access, Dialect, Route
from stellara.sim import RunningSimulator
from tests.conftest import (
    LIMITED_KEY,
    MASTER_KEY,
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    gateway_config,
    upstream_requests,
)

MODEL = "other-model"  # allowed for alice and bob alike
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Who may call me?"}]}
RESPONSE = {"model": MODEL, "input": "Who may read me?"}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "Who may call me?"}]}]}
GEMINI_EMBED = {"content": {"parts": [{"text": "hello"}]}}
# Stopped, so that any number of them may exist on the model.
EXPERIMENT: dict[str, Any] = {
    "id": "matrix",
    "model": MODEL,
    "status": "stopped",
    "variants": [{"name": "a", "share": 50}, {"name": "b", "share": 50}],
}
IDENTITIES = ("none", "wrong", "revoked", "alice", "bob", "master")
INVALID = ("none", "wrong", "revoked")


@dataclass(frozen=True)
class Call:
    """How one route is exercised: a request that succeeds for an allowed caller (`ok` is
    the status it then answers)."""

    path: str = ""  # with `{key_id}` filled at run time
    json: Any = None
    form: dict[str, str] | None = None
    ok: int = 200


@dataclass(frozen=True)
class Served:
    """A route as the app serves it: method, canonical path, and its declaration."""

    method: str
    path: str
    route: Route

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def access(self) -> str:
        return self.route.access.value


SAMPLES: dict[tuple[str, str], Call] = {
    ("GET", "/healthz"): Call(),
    ("GET", "/readyz"): Call(),
    ("GET", "/openapi.json"): Call(),
    ("GET", "/docs"): Call(),
    ("GET", "/metrics"): Call(),
    ("GET", "/dashboard"): Call(),  # the login form
    ("GET", "/dashboard/static/{name}"): Call("/dashboard/static/app.js"),
    ("POST", "/dashboard/login"): Call(form={"key": "not-the-master-key"}),
    ("POST", "/dashboard/logout"): Call(ok=303),
    ("GET", "/dashboard/data"): Call(),
    ("GET", "/dashboard/experiments"): Call(),
    ("POST", "/v1/chat/completions"): Call(json=CHAT),
    ("POST", "/v1/completions"): Call(json={"model": MODEL, "prompt": "Who may call me?"}),
    ("POST", "/v1/embeddings"): Call(json={"model": MODEL, "input": "hello"}),
    ("POST", "/v1/messages"): Call(
        json={"model": MODEL, "max_tokens": 16, "messages": CHAT["messages"]}
    ),
    ("POST", "/v1/messages/count_tokens"): Call(
        json={"model": MODEL, "messages": CHAT["messages"]}
    ),
    ("POST", "/v1/responses"): Call(json=RESPONSE),
    # `request_id` is filled at run time with a request of the caller's own user.
    ("POST", "/v1/feedback"): Call(json={"metric": "thumbs_up", "value": True}),
    ("GET", "/v1/responses/{response_id}"): Call(),
    ("DELETE", "/v1/responses/{response_id}"): Call(),
    ("GET", "/v1/responses/{response_id}/input_items"): Call(),
    ("POST", "/ai-orchestration/generate"): Call(json=CHAT),
    ("POST", "/ai-orchestration/generate-with-fallback"): Call(json=CHAT),
    ("GET", "/v1/models"): Call(),
    ("GET", "/v1/models/{model_id}"): Call(f"/v1/models/{MODEL}"),
    ("GET", "/ai-orchestration/health"): Call(),
    ("GET", "/ai-orchestration/healthy-providers"): Call(),
    ("GET", "/ai-orchestration/stats"): Call(),
    ("GET", "/ai-orchestration/monitoring/stats"): Call(),
    ("GET", "/ai-orchestration/quotas/{userId}"): Call("/ai-orchestration/quotas/alice"),
    ("GET", "/ai-orchestration/rate-limits/{userId}"): Call("/ai-orchestration/rate-limits/alice"),
    ("POST", "/ai-orchestration/quotas/{userId}/reset"): Call(
        "/ai-orchestration/quotas/alice/reset"
    ),
    ("POST", "/ai-orchestration/rate-limits/{userId}/reset"): Call(
        "/ai-orchestration/rate-limits/alice/reset"
    ),
    ("GET", "/ai-orchestration/circuit-breakers"): Call(),
    ("POST", "/ai-orchestration/circuit-breakers/{breaker_id}/reset"): Call(
        "/ai-orchestration/circuit-breakers/sim/reset"
    ),
    ("GET", "/ai-orchestration/cache/stats"): Call(),
    ("POST", "/ai-orchestration/cache/clear"): Call(json={"user": "alice"}),
    ("POST", "/ai-orchestration/cache/warm"): Call(
        json={"entries": [{"user": "alice", "model": MODEL, **CHAT, "response": "hi"}]},
    ),
    ("POST", "/ai-orchestration/monitoring/reset"): Call(),
    ("POST", "/admin/keys"): Call(json={"user": "carol"}, ok=201),
    ("GET", "/admin/keys"): Call(),
    ("GET", "/admin/keys/{key_id}"): Call(),
    ("PATCH", "/admin/keys/{key_id}"): Call(json={"name": "renamed"}),
    ("DELETE", "/admin/keys/{key_id}"): Call(),
    ("GET", "/admin/users"): Call(),
    ("GET", "/admin/users/{user}"): Call("/admin/users/alice"),
    ("GET", "/admin/usage"): Call(),
    ("GET", "/admin/usage/status"): Call(),
    ("GET", "/admin/spend"): Call(),
    ("GET", "/admin/experiments"): Call(),
    ("POST", "/admin/experiments"): Call(json=EXPERIMENT, ok=201),
    ("GET", "/admin/experiments/{experiment_id}"): Call(),
    ("PATCH", "/admin/experiments/{experiment_id}"): Call(json={"winner": "b"}),
    ("GET", "/admin/experiments/{experiment_id}/report"): Call(),
    ("POST", "/admin/quotas/rebuild"): Call(json={"users": ["alice"]}),
    ("GET", "/v1beta/models"): Call(),
    ("GET", "/v1beta/models/{model}"): Call(f"/v1beta/models/{MODEL}"),
}
for _version in ("v1", "v1beta"):
    _actions = {
        "generateContent": Call(json=GEMINI),
        "streamGenerateContent": Call(json=GEMINI),
        "countTokens": Call(json=GEMINI),
        "embedContent": Call(json=GEMINI_EMBED),
        "batchEmbedContents": Call(json={"requests": [GEMINI_EMBED]}),
    }
    for _action, _call in _actions.items():
        _query = "?alt=sse" if _action == "streamGenerateContent" else ""
        _path = f"/{_version}/models/{MODEL}:{_action}{_query}"
        SAMPLES[("POST", f"/{_version}/models/{{model}}:{_action}")] = Call(_path, _call.json)


def expected_status(
    access: str, call: Call, who: str, *, master_may_call_models: bool = False
) -> int:
    if access == "public":
        return call.ok
    if who in INVALID or access == "cookie":
        return 401
    if access == "model" and who == "master" and not master_may_call_models:
        return 403
    if access == "own_user" and who == "bob":
        return 403
    if access == "master" and who != "master":
        return 403
    return call.ok


def limits_config(sim_url: str, **overrides: Any) -> dict[str, Any]:
    """Tiers for alice and bob, so the quota and rate-limit routes have windows to show."""
    tier = {
        "rate": {"window_s": 60, "requests": 1000, "tokens": 1_000_000},
        "quota": {"daily": {"requests": 1000}},
    }
    limits = {"tiers": {"free": tier}, "users": {"alice": {"tier": "free"}}}
    feedback = {"metrics": {"thumbs_up": {"type": "boolean"}}}
    return gateway_config(sim_url, limits=limits, cache={}, feedback=feedback, **overrides)


@dataclass
class Caller:
    """The gateway under test and the keys of every identity."""

    gateway: RunningGateway
    http: aiohttp.ClientSession
    keys: dict[str, str | None] = field(default_factory=dict)

    async def send(
        self, method: str, path: str, who: str, *, json: Any = None, form: Any = None
    ) -> tuple[int, bytes]:
        headers = {}
        key = self.keys[who]
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        async with self.http.request(
            method,
            self.gateway.url + path,
            headers=headers,
            json=json,
            data=form,
            allow_redirects=False,
        ) as response:
            return response.status, await response.read()

    async def admin(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        status, body = await self.send(method, path, "master", json=json)
        assert status in (200, 201), body
        answer: dict[str, Any] = _loads(body)
        return answer


def _loads(body: bytes) -> Any:
    return json.loads(body)


async def make_caller(gateway: RunningGateway, http: aiohttp.ClientSession) -> Caller:
    caller = Caller(
        gateway, http, {"none": None, "wrong": "sk-wrong-key-000000", "alice": USER_KEY}
    )
    caller.keys.update(bob=LIMITED_KEY, master=MASTER_KEY)
    created = await caller.admin("POST", "/admin/keys", {"user": "mallory"})
    caller.keys["revoked"] = created["key"]
    # Used once (so the gateway has it cached as valid), then revoked.
    assert (await caller.send("GET", "/v1/models", "revoked"))[0] == 200
    await caller.admin("DELETE", f"/admin/keys/{created['key_id']}")
    return caller


async def resolve_path(caller: Caller, who: str, canonical: str, call: Call) -> str:
    if "{response_id}" in canonical:
        # A fresh stored response per request, of the caller's own user where it has one
        # (the master key reads alice's): DELETE removes it, and another user's is a 404.
        owner = who if who in ("alice", "bob") else "alice"
        status, body = await caller.send("POST", "/v1/responses", owner, json=RESPONSE)
        assert status == 200, body
        return canonical.replace("{response_id}", _loads(body)["id"])
    if "{experiment_id}" in canonical:
        # A fresh experiment per request, as keys are.
        experiment = {**EXPERIMENT, "id": f"matrix-{secrets.token_hex(4)}"}
        await caller.admin("POST", "/admin/experiments", experiment)
        return canonical.replace("{experiment_id}", experiment["id"])
    if "{key_id}" not in canonical:
        return call.path or canonical
    # A fresh key per request: DELETE revokes it, and PATCH / GET must find it live.
    created = await caller.admin("POST", "/admin/keys", {"user": "dave"})
    return canonical.replace("{key_id}", created["key_id"])


async def resolve_json(
    caller: Caller, who: str, canonical: str, call: Call, master_may_call_models: bool
) -> Any:
    if canonical != "/v1/feedback":
        return call.json
    # Feedback rates a request of the caller's own user: one made with its key, where that
    # key may call models (alice's otherwise: an invalid caller is refused before it counts).
    may_call = who in ("alice", "bob") or (who == "master" and master_may_call_models)
    maker = caller.keys[who if may_call else "alice"]
    async with caller.http.post(
        caller.gateway.url + "/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {maker}"},
    ) as response:
        assert response.status == 200, await response.text()
        request_id = response.headers["x-stellara-request-id"]
    return {**call.json, "request_id": request_id}


def check_error_body(route: Route, status: int, body: bytes) -> str | None:
    """None when `body` is the error body the route's dialect promises for `status`."""
    try:
        data = _loads(body)
    except ValueError:
        return f"not JSON: {body[:80]!r}"
    error_type = {401: "authentication_error", 403: "permission_error"}[status]
    if route.dialect is Dialect.ANTHROPIC:
        ok = data.get("type") == "error" and data.get("error", {}).get("type") == error_type
        ok = ok and isinstance(data["error"].get("message"), str)
    elif route.dialect is Dialect.GEMINI:
        rpc_status = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}[status]
        error = data.get("error")
        ok = isinstance(error, dict) and set(error) == {"code", "message", "status"}
        ok = ok and error["code"] == status and error["status"] == rpc_status
        ok = ok and bool(error["message"])
    else:
        error = data.get("error")
        ok = isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
        ok = ok and error["type"] == error_type and bool(error["message"])
    return None if ok else f"bad error body {data!r}"


async def run_matrix(
    caller: Caller,
    routes: list[Served],
    identities: tuple[str, ...] = IDENTITIES,
    *,
    master_may_call_models: bool = False,
) -> list[str]:
    problems: list[str] = []
    for served in routes:
        call = SAMPLES[served.key]
        for who in identities:
            path = await resolve_path(caller, who, served.path, call)
            json_body = await resolve_json(caller, who, served.path, call, master_may_call_models)
            status, body = await caller.send(
                served.method, path, who, json=json_body, form=call.form
            )
            want = expected_status(
                served.access, call, who, master_may_call_models=master_may_call_models
            )
            where = f"{served.method} {path} as {who}"
            if status != want:
                problems.append(f"{where}: {status} (want {want}) {body[:160]!r}")
            elif status in (401, 403) and served.access != "public":
                problem = check_error_body(served.route, status, body)
                if problem:
                    problems.append(f"{where}: {problem}")
    return problems


def served_routes(gateway: RunningGateway) -> list[Served]:
    """Every route the app serves (the catch-all aside), with the declaration behind it."""
    served = []
    for route in gateway.app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        handler = getattr(route.handler, "__self__", None)
        if route.resource.canonical == "/{tail}":
            continue
        assert isinstance(handler, RouteHandler), f"{route} is not a declared route"
        served.append(Served(route.method, route.resource.canonical, handler.route))
    return served


GatewayFactory = Callable[..., Awaitable[tuple[RunningGateway, Caller]]]


@pytest.fixture
async def matrix_gateway(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> GatewayFactory:
    async def start(**overrides: Any) -> tuple[RunningGateway, Caller]:
        gateway = await start_gateway(limits_config(sim.url, **overrides))
        return gateway, await make_caller(gateway, http)

    return start


async def test_every_route_is_sampled(matrix_gateway: GatewayFactory) -> None:
    gateway, _ = await matrix_gateway()
    served = served_routes(gateway)
    assert [s.route for s in served] == list(ROUTES), "the app serves exactly the route table"
    keys = {s.key for s in served}
    assert keys - SAMPLES.keys() == set(), "routes without a sample: add them to SAMPLES"
    assert SAMPLES.keys() - keys == set(), "SAMPLES names routes the gateway does not serve"


def test_the_table_guards_what_must_be_guarded() -> None:
    """The declarations, against the rules: admin routes and every management POST need the
    master key; model calls need a model key; only the dashboard's feeds take the cookie;
    nothing that changes state is public but the dashboard's own sign-in and sign-out."""
    for route in ROUTES:
        where = f"{route.method} {route.path}"
        if route.path.startswith("/admin/"):
            assert route.access is Access.MASTER, where
        if route.path.startswith("/ai-orchestration/") and route.method == "POST":
            is_generate = route.path.startswith("/ai-orchestration/generate")
            assert route.access is (Access.MODEL if is_generate else Access.MASTER), where
        if route.path.startswith("/v1/") and route.method == "POST":
            assert route.access is Access.MODEL, where
        if route.access is Access.COOKIE:
            assert route.path in ("/dashboard/data", "/dashboard/experiments"), where
        if route.access is Access.PUBLIC and route.method != "GET":
            assert route.path in ("/dashboard/login", "/dashboard/logout"), where


async def test_each_route_admits_exactly_its_callers(matrix_gateway: GatewayFactory) -> None:
    gateway, caller = await matrix_gateway()
    problems = await run_matrix(caller, served_routes(gateway))
    assert problems == [], "\n".join(problems)


async def test_master_key_calls_models_only_when_configured(
    matrix_gateway: GatewayFactory,
) -> None:
    gateway, caller = await matrix_gateway(
        server={"master_key": MASTER_KEY, "master_key_model_calls": True}
    )
    model_routes = [served for served in served_routes(gateway) if served.access == "model"]
    problems = await run_matrix(caller, model_routes, master_may_call_models=True)
    assert problems == [], "\n".join(problems)


async def test_own_limits_show_the_users_windows(matrix_gateway: GatewayFactory) -> None:
    """The per-user reads answer real content: alice's tier and windows, to alice and master."""
    _, caller = await matrix_gateway()
    for who in ("alice", "master"):
        status, body = await caller.send("GET", "/ai-orchestration/quotas/alice", who)
        assert status == 200
        quotas = _loads(body)
        assert (quotas["user"], quotas["tier"], quotas["limited"]) == ("alice", "free", True)
        assert quotas["windows"]["daily"]["requests"]["limit"] == 1000
        status, body = await caller.send("GET", "/ai-orchestration/rate-limits/alice", who)
        assert status == 200
        assert _loads(body)["windows"]["rate"]["requests"]["limit"] == 1000
    # bob may read his own (untiered) status, not alice's
    assert (await caller.send("GET", "/ai-orchestration/quotas/bob", "bob"))[0] == 200
    status, body = await caller.send("GET", "/ai-orchestration/rate-limits/alice", "bob")
    assert status == 403
    assert b"1000" not in body


async def test_refused_master_route_changes_nothing(matrix_gateway: GatewayFactory) -> None:
    """A user key's refused reset or key creation leaves no trace."""
    _, caller = await matrix_gateway()
    before = await caller.admin("GET", "/admin/keys")
    assert (await caller.send("POST", "/admin/keys", "alice", json={"user": "alice"}))[0] == 403
    after = await caller.admin("GET", "/admin/keys")
    assert len(after["data"]) == len(before["data"])


# No client field, header or model name chooses where the gateway connects (SSRF).


SPOOFED_HEADERS = {"x-forwarded-host", "forwarded", "x-stellara-provider"}


@pytest.fixture
async def bystander() -> AsyncIterator[tuple[str, list[str]]]:
    """Another server on loopback that records every hit: the address a client would like the
    gateway to call. It must never be called."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path_qs}")
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", hits
    await runner.cleanup()


async def test_no_request_chooses_the_upstream(
    sim: RunningSimulator,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    bystander: tuple[str, list[str]],
) -> None:
    evil, hits = bystander
    evil_host = evil.removeprefix("http://")
    gateway = await start_gateway(gateway_config(sim.url))
    messages = CHAT["messages"]
    redirects = {"base_url": evil + "/v1", "api_base": evil + "/v1", "url": evil, "host": evil}
    spoofed = {
        "x-stellara-provider": "evil",
        "Host": evil_host,
        "X-Forwarded-Host": evil_host,
        "X-Forwarded-For": "127.0.0.1",
        "Forwarded": f"host={evil_host}",
    }
    model = {"model": "test-model", "messages": messages}
    cases: list[tuple[str, dict[str, Any], dict[str, str], int]] = [
        ("/v1/chat/completions", {**model, **redirects}, spoofed, 200),
        ("/v1/chat/completions", {**model, "stream": True, **redirects}, spoofed, 200),
        ("/v1/chat/completions", {"model": evil + "/v1", "messages": messages}, {}, 404),
        ("/v1/chat/completions", {"model": f"sim/{evil}", "messages": messages}, {}, 404),
        ("/v1/messages", {**model, "max_tokens": 8}, spoofed, 200),
        # Anthropic's API refuses fields it does not declare, and so does the gateway.
        ("/v1/messages", {**model, "max_tokens": 8, **redirects}, {}, 400),
        ("/v1/embeddings", {"model": "test-model", "input": "x", **redirects}, spoofed, 200),
        ("/ai-orchestration/generate", {**model, **redirects}, spoofed, 200),
        # `routing.providers` only filters the configured targets: naming others is a 400.
        ("/ai-orchestration/generate", {**model, "routing": {"providers": ["evil"]}}, {}, 400),
        ("/ai-orchestration/generate", {**model, "routing": {"providers": [evil]}}, {}, 400),
        (
            "/ai-orchestration/generate-with-fallback",
            {**model, "routing": {"providers": [evil + "/v1"]}, **redirects},
            spoofed,
            400,
        ),
    ]
    for path, body, headers, want in cases:
        headers = {**headers, "Authorization": f"Bearer {USER_KEY}"}
        async with http.post(gateway.url + path, json=body, headers=headers) as response:
            await response.read()
            assert response.status == want, (path, body)
    assert hits == []
    sim_host = sim.url.removeprefix("http://")
    seen = await upstream_requests(sim)
    assert len(seen) == 5  # the five calls answered upstream, each sent there once
    for request in seen:
        assert request["path"] in ("/v1/chat/completions", "/v1/embeddings")
        assert request["headers"]["host"] == sim_host
        assert request["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert not SPOOFED_HEADERS & request["headers"].keys()
    # Undeclared chat-completion fields are relayed as data, as sent, to the configured
    # upstream (an OpenAI-compatible server decides what they mean), never read as where to go.
    carrying = [r for r in seen if set(redirects) & set(r["body"])]
    # /v1/chat/completions (JSON and stream) and /ai-orchestration/generate's chat body.
    assert len(carrying) == 3
    assert all(r["path"] == "/v1/chat/completions" for r in carrying)
