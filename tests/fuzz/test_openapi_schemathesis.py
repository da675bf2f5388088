"""Schemathesis against the gateway's own `/openapi.json`: every route and method of a real
gateway (simulator behind it, limits and cache on) is called with generated requests, valid
and invalid, and must never answer with a 5xx nor with a body its own schema does not allow.

The gateway runs on a loopback port in a thread of its own (schemathesis calls synchronously);
examples are seeded and bounded so the file runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, CheckContext, CheckFunction, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import response_schema_conformance

from stellara.assembly.config import check_config
from stellara.server import create_app
from stellara.sim import SimConfig, start_simulator
from tests.conftest import MASTER_KEY, USER_KEY, gateway_config
from tests.fuzz.sse_schema import stream_schema_errors

T = TypeVar("T")

EXAMPLES = 10  # per operation and generation mode
SEED = 20240610
# The routes that call a model: exercised with a user key as well as the master key.
MODEL_PATHS = ("/v1/", "/ai-orchestration/generate")


def body_conformance(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """`response_schema_conformance`, with event streams checked event by event: the
    document's `schema` of a `text/event-stream` describes each event's JSON `data`, where
    schemathesis reads it as the event itself (OpenAPI 3.2's reading) and would fail them all."""
    types = [v for k, vs in response.headers.items() if k.lower() == "content-type" for v in vs]
    if any(value.startswith("text/event-stream") for value in types):
        errors = stream_schema_errors(case.operation.path, response.text)
        assert not errors, f"stream events outside their schema: {errors[:3]}"
        return True
    return response_schema_conformance(ctx, response, case)


CHECKS: list[CheckFunction] = [not_a_server_error, body_conformance]


@dataclass
class Served:
    url: str
    run: Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A simulator and a gateway on loopback ports, in an event loop on their own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

    simulator = run(start_simulator(SimConfig()))
    config = gateway_config(
        simulator.url,
        cache={},
        # An absolute path: the per-test working directory changes after this starts.
        usage_store={"url": f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'stellara.db'}"},
        limits={
            "tiers": {"fuzz": {"rate": {"window_s": 60, "requests": 100_000}}},
            "default_tier": "fuzz",
        },
        resilience={"retry": {"base_delay_ms": 1, "max_delay_ms": 5}},
    )
    config["server"]["master_key_model_calls"] = True
    # The model names of the document's request examples, which the explicit phase sends.
    target = config["models"][0]["targets"]
    config["models"] += [
        {"name": "my-model", "targets": target},
        {"name": "my-embedding-model", "targets": target},
    ]

    async def serve() -> web.AppRunner:
        runner = web.AppRunner(create_app(check_config(config)), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = run(serve())
    port = runner.addresses[0][1]
    try:
        yield Served(f"http://127.0.0.1:{port}", run)
    finally:
        run(runner.cleanup())
        run(simulator.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


@dataclass
class Outcome:
    failures: list[str] = field(default_factory=list)
    # (operation label, key) → the statuses answered
    statuses: dict[tuple[str, str], set[int]] = field(default_factory=dict)


def _fuzz_operation(
    served: Served,
    session: requests.Session,
    operation: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    key: str,
    statuses: set[int],
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    # Each warm request asks the model once per prompt: fewer examples keep the file fast.
    examples = EXAMPLES // 3 if operation.path.endswith("/cache/warm") else EXAMPLES

    @seed(SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode), known=st.booleans())
    def call(case: Case[Any], known: bool) -> None:
        # Generated model names are all unknown (404): half the cases ask for a real model.
        if known and isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
            case.body["model"] = "test-model"
        response = case.call_and_validate(
            base_url=served.url, session=session, headers=headers, checks=CHECKS
        )
        statuses.add(response.status_code)

    call()


def _fuzz(served: Served, mode: GenerationMode) -> Outcome:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    outcome = Outcome()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            if isinstance(result, Err):  # an operation the document describes wrongly
                outcome.failures.append(f"invalid operation: {result.err()}")
                continue
            operation = result.ok()
            keys = [MASTER_KEY]
            if operation.path.startswith(MODEL_PATHS):
                keys.append(USER_KEY)
            for key in keys:
                statuses = outcome.statuses.setdefault((operation.label, key), set())
                try:
                    _fuzz_operation(served, session, operation, mode, key, statuses)
                except Unsatisfiable:
                    continue  # no parameter to break: nothing to fuzz in the negative mode
                # Failures of checks, alone or grouped; every operation runs, every failure is told.
                except (AssertionError, BaseExceptionGroup) as exc:
                    outcome.failures.append(f"{operation.label} ({key[:12]}…): {exc}")
    return outcome


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_and_responses_match_the_schema(
    served: Served, mode: GenerationMode
) -> None:
    outcome = _fuzz(served, mode)

    assert not outcome.failures, "\n\n".join(outcome.failures)
    assert len(outcome.statuses) >= 40  # every route and method of the document was called
    if mode is GenerationMode.POSITIVE:
        # The model routes take either key (not refused at the door): each answers its
        # documented example. (Whether the fuzzer's own cases reach a 2xx depends on what
        # hypothesis generates, which is not stable across test orders.)
        document = requests.get(f"{served.url}/openapi.json", timeout=10).json()
        for path in ("/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/embeddings"):
            example = document["paths"][path]["post"]["requestBody"]["content"]["application/json"][
                "example"
            ]
            for key in (MASTER_KEY, USER_KEY):
                answer = requests.post(
                    served.url + path,
                    json=example,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=10,
                )
                assert answer.status_code == 200, (path, answer.text)
