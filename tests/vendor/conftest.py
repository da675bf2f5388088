"""Runs the official SDKs' own generated API tests against a real gateway.

`openai_python/` and `anthropic_sdk_python/` hold `tests/api_resources/` of openai-python and
anthropic-sdk-python (see README.md there: versions, licence), written for a mock server that
answers anything with example data. Here they meet a gateway on a loopback port, backed by the
provider simulators, whose config maps the placeholder model names and API keys the tests send.

`EXPECTED_FAILURES` is the one list of the tests that fail here, each with why: a real server
fails them too (placeholder ids, out-of-range values), or they ask for what the gateway refuses
by design or does not serve. They run as strict xfails: one that starts passing fails the run
until it leaves the list.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import openai
import pytest
from aiohttp import web
from anthropic.resources.messages import DEPRECATED_MODELS

from stellara.assembly.config import check_config
from stellara.server import create_app
from stellara.sim import SimConfig, start_simulator

T = TypeVar("T")

OPENAI_SDK_KEY = "My API Key"  # what openai-python's tests send
ANTHROPIC_SDK_KEY = "my-anthropic-api-key"  # what anthropic-sdk-python's tests send
_SIM_KEY = "sk-simulated-provider"


@dataclass(frozen=True)
class ExpectedFailure:
    """Why a vendored test fails here, and the SDK error it must fail with: any other error,
    or none, fails the run."""

    why: str
    raises: type[Exception]


_NOT_SERVED = ExpectedFailure(
    "the gateway does not serve this route: 404, as for any unknown path", openai.NotFoundError
)
_METHOD_NOT_SERVED = ExpectedFailure(
    "the gateway does not serve this method on a path it serves: 405 naming the methods it does",
    openai.APIStatusError,
)
_UNKNOWN_RESPONSE = ExpectedFailure(
    "a placeholder response id no request created: 404, as the real API answers",
    openai.NotFoundError,
)
_STREAM_REPLAY = ExpectedFailure(
    "stream: true on a stored response replays a background response's events; the gateway "
    "runs none, so it is a 400 naming stream (and the placeholder id names nothing)",
    openai.BadRequestError,
)
_ZERO_LIMIT = ExpectedFailure(
    "limit 0, below the 1 the real API takes too: 400 (and the placeholder id names nothing)",
    openai.BadRequestError,
)
_EMPTY_RESPONSE_REQUEST = ExpectedFailure(
    "an empty request (no model, no input): 400, as the real API answers", openai.BadRequestError
)
_ZERO_MAX_TOKENS = ExpectedFailure(
    "max_tokens and max_completion_tokens are 0: 400, as OpenAI's models answer (at least 1)",
    openai.BadRequestError,
)
_LEGACY_REFUSED = ExpectedFailure(
    "suffix, and echo with logprobs: a legacy completion is answered by a chat model, which "
    "can do neither, so each is a 400 naming it (docs/guide/sdk-routes.md)",
    openai.BadRequestError,
)
_RESPONSES_REFUSED = ExpectedFailure(
    "conversation with previous_response_id (the real API refuses the two together), ids that "
    "name nothing, and what the gateway refuses by design with a 400 naming it: background, "
    "prompt templates, truncation: auto, fields it does not know (docs/guide/responses.md)",
    openai.BadRequestError,
)
_BASE64_STRICT = ExpectedFailure(
    "strict validation only: the SDK asks for base64 when no encoding_format is given and "
    "validates the base64 string as a list of floats before decoding it, so the real API, "
    "which answers in base64 as asked, fails this too",
    openai.APIResponseValidationError,
)
_BOTH_CURSORS = ExpectedFailure(
    "after_id and before_id together, naming no model: 400, as no server can page from a "
    "cursor that names nothing",
    anthropic.BadRequestError,
)

_MESSAGES_UNDECLARED = ExpectedFailure(
    "every field the SDK knows, some of which (container, mcp_servers, context_management, "
    "output_config.effort, speed, inference_geo, tools' defer_loading ...) the gateway cannot "
    "carry to every provider: a 400 naming the first, never dropped in silence "
    "(docs/guide/sdk-routes.md)",
    anthropic.BadRequestError,
)


def _each(file: str, expected: ExpectedFailure, *tests: str) -> dict[str, ExpectedFailure]:
    return {f"{file}::{test}": expected for test in tests}


def _kinds(*methods: str) -> tuple[str, ...]:
    """The SDK's three ways to call each method: parsed, raw, streamed."""
    return tuple(
        f"test_{kind}_{method}"
        for kind in ("method", "raw_response", "streaming_response")
        for method in methods
    )


_CHAT = "openai_python/api_resources/chat/test_completions.py"
_LEGACY = "openai_python/api_resources/test_completions.py"
_RESPONSES = "openai_python/api_resources/test_responses.py"
_INPUT_ITEMS = "openai_python/api_resources/responses/test_input_items.py"
_EMBEDDINGS = "openai_python/api_resources/test_embeddings.py"

# `file::test` (both the sync and the async twin), or `file::test[param]` for one client
# setting only -> why a real server fails it too, or why the gateway refuses it on purpose.
EXPECTED_FAILURES: dict[str, ExpectedFailure] = {
    # Stored chat completions (`store: true`, then list, get, update, delete) are not kept.
    **_each(_CHAT, _NOT_SERVED, *_kinds("retrieve", "update", "delete")),
    **_each(_CHAT, _METHOD_NOT_SERVED, *_kinds("list"), "test_method_list_with_all_params"),
    **_each(
        _CHAT,
        _ZERO_MAX_TOKENS,
        "test_method_create_with_all_params_overload_1",
        "test_method_create_with_all_params_overload_2",
    ),
    **_each(
        _LEGACY,
        _LEGACY_REFUSED,
        "test_method_create_with_all_params_overload_1",
        "test_method_create_with_all_params_overload_2",
    ),
    # Public models come from the config: there is no fine-tuned model to delete.
    **_each("openai_python/api_resources/test_models.py", _METHOD_NOT_SERVED, *_kinds("delete")),
    # Background responses and compaction are not served (`compact` reads as a response id).
    **_each(_RESPONSES, _NOT_SERVED, *_kinds("cancel")),
    **_each(
        _RESPONSES, _METHOD_NOT_SERVED, *_kinds("compact"), "test_method_compact_with_all_params"
    ),
    **_each(_RESPONSES, _EMPTY_RESPONSE_REQUEST, *_kinds("create_overload_1", "create_overload_2")),
    **_each(
        _RESPONSES,
        _RESPONSES_REFUSED,
        "test_method_create_with_all_params_overload_1",
        "test_method_create_with_all_params_overload_2",
    ),
    **_each(
        _RESPONSES,
        _UNKNOWN_RESPONSE,
        *_kinds("retrieve_overload_1", "delete"),
        "test_method_retrieve_with_all_params_overload_1",
    ),
    **_each(
        _RESPONSES,
        _STREAM_REPLAY,
        *_kinds("retrieve_overload_2"),
        "test_method_retrieve_with_all_params_overload_2",
    ),
    **_each(_INPUT_ITEMS, _UNKNOWN_RESPONSE, *_kinds("list")),
    **_each(_INPUT_ITEMS, _ZERO_LIMIT, "test_method_list_with_all_params"),
    **{
        f"{_EMBEDDINGS}::{test}[{client}]": _BASE64_STRICT
        for test in _kinds("create")
        for client in ("strict", "aiohttp")
    },
    **{
        f"anthropic_sdk_python/api_resources/{file}::test_method_list_with_all_params": (
            _BOTH_CURSORS
        )
        for file in ("test_models.py", "beta/test_models.py")
    },
    **{
        f"anthropic_sdk_python/api_resources/{file}::{test}": _MESSAGES_UNDECLARED
        for file in ("test_messages.py", "beta/test_messages.py")
        for test in (
            "test_method_create_with_all_params_overload_1",
            "test_method_create_with_all_params_overload_2",
            "test_method_count_tokens_with_all_params",
        )
    },
}


def _targets(provider: str, model: str) -> list[dict[str, str]]:
    return [{"provider": provider, "model": model}]


def sdk_gateway_config(sim_url: str, usage_db: Path) -> dict[str, Any]:
    """The placeholder model names the SDK tests send, each on a simulated provider of the
    SDK's own wire format, and the two SDKs' test keys."""
    openai_chat = _targets("openai-sim", "gpt-4o")
    claude = _targets("anthropic-sim", "claude-sonnet-4-5")
    return {
        "server": {"master_key": "sk-sdk-tests-master-key"},
        "usage_store": {"url": f"sqlite:///{usage_db}"},
        "resilience": {"retry": {"base_delay_ms": 1, "max_delay_ms": 5}},
        "providers": [
            {
                "id": "openai-sim",
                "type": "openai",
                "base_url": f"{sim_url}/v1",
                "api_key": _SIM_KEY,
            },
            {"id": "anthropic-sim", "type": "anthropic", "base_url": sim_url, "api_key": _SIM_KEY},
        ],
        "models": [
            {"name": "gpt-6.2-astra", "targets": openai_chat},
            {"name": "gpt-6-astra", "targets": openai_chat},
            {"name": "gpt-3.5-turbo-instruct", "targets": openai_chat},
            {
                "name": "text-embedding-3-small",
                "targets": _targets("openai-sim", "text-embedding-3-small"),
            },
            {"name": "claude-opus-5-5", "targets": claude},
            {"name": "model_id", "targets": claude},  # anthropic's models.retrieve("model_id")
            # test_deprecated_model_warning sends each: deprecated models still answer.
            *({"name": name, "targets": claude} for name in DEPRECATED_MODELS),
        ],
        "keys": [
            {"key": OPENAI_SDK_KEY, "user": "openai-sdk-tests"},
            {"key": ANTHROPIC_SDK_KEY, "user": "anthropic-sdk-tests"},
        ],
    }


@pytest.fixture(scope="session")
def sdk_gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simulator and a gateway on loopback ports, in an event loop on their own thread, so
    the SDKs' sync clients can block on them as on any server."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

    simulator = run(start_simulator(SimConfig()))
    # An absolute path: each test changes the working directory.
    config = sdk_gateway_config(simulator.url, tmp_path_factory.mktemp("sdk") / "stellara.db")

    async def serve() -> web.AppRunner:
        runner = web.AppRunner(create_app(check_config(config)), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = run(serve())
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        run(runner.cleanup())
        run(simulator.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if not item.path.is_relative_to(here) or not isinstance(item, pytest.Function):
            continue
        file = item.path.relative_to(here).as_posix()
        expected = EXPECTED_FAILURES.get(f"{file}::{item.name}") or EXPECTED_FAILURES.get(
            f"{file}::{item.originalname}"
        )
        if expected is not None:
            marker = pytest.mark.xfail(reason=expected.why, raises=expected.raises, strict=True)
            item.add_marker(marker)
