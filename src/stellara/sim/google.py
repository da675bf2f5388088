"""The Gemini API wire format: `models/{model}:generateContent` and `:streamGenerateContent`.

:class:`GoogleSim` answers ``POST /v1beta/models/{model}:generateContent`` (and ``/v1/…``) with a
``GenerateContentResponse``; ``:streamGenerateContent?alt=sse`` streams one response fragment per
token as ``data: {...}\\r\\n\\r\\n`` events, the last one with the ``finishReason`` and full usage
(without ``alt=sse`` the fragments come back as one JSON array, as Google does).

Like Google, it is strict where Gemini is strict, so adapters cannot get away with what the real
API refuses: what any request must obey is checked in :mod:`~stellara.sim.google_request`
(400 ``INVALID_ARGUMENT`` with Google's messages). A missing API key is 403
``PERMISSION_DENIED``, a wrong one 400 with ``ErrorInfo.reason`` ``API_KEY_INVALID``, as Google
answers them. Thinking models check their ``thinkingConfig``, report thought tokens and sign
their function calls, and Gemini 3 refuses a turn without its signatures (see
:mod:`~stellara.sim.google_thinking`); ``responseLogprobs`` gets a ``logprobsResult`` (see
:mod:`~stellara.sim.google_logprobs`).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
from aiohttp import web

from stellara.sim import text
from stellara.sim.config import SimConfig
from stellara.sim.faults import StreamCut
from stellara.sim.google_embeddings import answer_embeddings
from stellara.sim.google_logprobs import logprobs_problem, logprobs_result
from stellara.sim.google_request import (
    Content,
    FunctionDeclaration,
    GenerateContentRequest,
    GenerationConfig,
    RequestRefusedError,
    ThinkingConfig,
    decode_request,
    validate_request,
)
from stellara.sim.google_thinking import (
    SentCall,
    SentContent,
    ThoughtSigner,
    is_thinking,
    thinking_problem,
    thought_tokens,
)

_PATH = re.compile(
    r"/v1(?:beta|alpha)?/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|batchEmbedContents|embedContent)$"
)
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"

# status -> (google.rpc status, default message) of the real API's error bodies.
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report the issue."),
    502: ("UNAVAILABLE", "The service is currently unavailable."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}


def error_body(
    status: int, message: str | None = None, *, details: Sequence[Mapping[str, Any]] = ()
) -> bytes:
    """Return a Gemini error body ``{"error": {"code", "message", "status"}}`` for ``status``.

    Args:
        status: HTTP status; picks the default message and ``google.rpc`` status.
        message: Replaces the default message.
        details: ``google.rpc`` detail messages, each with its ``@type``.
    """
    fallback = _STATUS_ERRORS[500 if status >= 500 else 400]
    rpc_status, default_message = _STATUS_ERRORS.get(status, fallback)
    error: dict[str, Any] = {"code": status, "message": message or default_message}
    error["status"] = rpc_status
    if status == 429 and not details:
        details = [{"@type": _RETRY_INFO, "retryDelay": "1s"}]
    if details:
        error["details"] = list(details)
    return orjson.dumps({"error": error})


def _error(status: int, message: str, **kwargs: Any) -> web.Response:
    return web.Response(
        status=status, body=error_body(status, message, **kwargs), content_type="application/json"
    )


@dataclass(frozen=True, slots=True)
class _Candidate:
    index: int
    pieces: tuple[str, ...]
    finish_reason: str
    call: dict[str, Any] | None = None  # a `functionCall` part's value
    signature: str | None = None  # the call's `thoughtSignature`, from a thinking model
    top_logprobs: int | None = None  # set when `responseLogprobs` asked for a `logprobsResult`

    @property
    def tokens(self) -> int:
        if self.call is not None:
            return text.count_tokens(orjson.dumps(self.call["args"]).decode())
        return len(self.pieces)


# ---------------------------------------------------------------- dialect


class GoogleSim:
    """Answers Gemini-format requests for one simulator.

    Args:
        config: Simulator settings (API key, answer length, per-token delay).
    """

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._ids = itertools.count()
        # A random prefix keeps ids unique across simulator restarts, a counter across requests.
        self._id_prefix = os.urandom(6)
        self._signer = ThoughtSigner(os.urandom(16))

    def serves(self, path: str) -> bool:
        """Whether ``path`` is a Gemini ``generateContent`` or ``streamGenerateContent`` call."""
        return _PATH.search(path) is not None

    def peek(self, path: str, raw: bytes) -> tuple[str | None, bool]:
        """Return ``(model, is_stream)``: both are in the path, not the body."""
        found = _PATH.search(path)
        if found is None:
            return None, False
        return found.group("model"), found.group("method") == "streamGenerateContent"

    def error_body(self, status: int) -> bytes:
        """Return the default Gemini error body for ``status``."""
        return error_body(status)

    async def handle(
        self, request: web.Request, raw: bytes, *, cut: StreamCut | None
    ) -> web.StreamResponse:
        """Answer one request.

        Args:
            request: The HTTP request.
            raw: Its body.
            cut: When set, the stream breaks off after ``cut.after_chunks`` content chunks.
        """
        refusal = self._check_auth(request)
        if refusal is not None:
            return refusal
        model, is_stream = self.peek(request.path, raw)
        if request.method != "POST" or model is None:
            return _error(404, f"Invalid URL ({request.method} {request.path})")
        method = request.path.rpartition(":")[2]
        if method in ("batchEmbedContents", "embedContent"):
            return answer_embeddings(method, raw)
        try:
            body = decode_request(raw)
            validate_request(body, model)
            self._validate_for_model(body, model)
            candidates = self._candidates(body, model)
        except RequestRefusedError as exc:
            return _error(400, exc.message)
        head = {"modelVersion": model, "responseId": self._response_id()}
        thinking = (body.generation_config or GenerationConfig()).thinking_config
        tokens = _Tokens(
            _prompt_tokens(body),
            thought_tokens(model, *_budget_and_level(thinking)),
        )
        if is_stream:
            writer = _StreamWriter(head, tokens, is_sse=request.query.get("alt") == "sse")
            delay_s = self._config.per_token_ms / 1000
            return await writer.send(request, candidates, cut=cut, delay_s=delay_s)
        completion_tokens = sum(candidate.tokens for candidate in candidates)
        if self._config.per_token_ms > 0:
            await asyncio.sleep(self._config.per_token_ms * completion_tokens / 1000)
        answer = {
            "candidates": [_candidate_object(c, c.pieces, c.finish_reason) for c in candidates],
            "usageMetadata": _usage(tokens, completion_tokens),
            **head,
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    def _check_auth(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            message = (
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API."
            )
            return _error(403, message)
        if self._config.api_key is not None and key != self._config.api_key:
            details = [
                {"@type": _ERROR_INFO, "reason": "API_KEY_INVALID", "domain": "googleapis.com"}
            ]
            return _error(400, "API key not valid. Please pass a valid API key.", details=details)
        return None

    def _response_id(self) -> str:
        raw_id = self._id_prefix + next(self._ids).to_bytes(6, "big")
        return base64.urlsafe_b64encode(raw_id).decode().rstrip("=")

    def _validate_for_model(self, body: GenerateContentRequest, model: str) -> None:
        """Refuse what this model refuses: thinking settings, logprobs, missing signatures."""
        config = body.generation_config or GenerationConfig()
        contents = [_sent_content(content) for content in body.contents]
        problem = (
            thinking_problem(model, *_budget_and_level(config.thinking_config))
            or logprobs_problem(config.response_logprobs, config.logprobs)
            or self._signer.turn_problem(model, contents)
        )
        if problem is not None:
            raise RequestRefusedError(problem)

    def _candidates(self, body: GenerateContentRequest, model: str) -> list[_Candidate]:
        prompt = msgspec.json.encode(body.contents)
        config = body.generation_config or GenerationConfig()
        user_text = _last_user_text(body.contents)
        function = _chosen_function(body)
        top = (config.logprobs or 0) if config.response_logprobs else None
        candidates = []
        for index in range(config.candidate_count or 1):
            seed = text.seed_of(prompt, index.to_bytes(2, "little"))
            if function is not None:
                schema = function.parameters or function.parameters_json_schema or {}
                args = text.sample_object(schema, text.words_of(user_text))
                call = {"name": function.name, "args": args}
                signature = self._signer.sign(function.name, args) if is_thinking(model) else None
                candidates.append(_Candidate(index, (), "STOP", call, signature))
                continue
            pieces = self._answer(body, config, seed, user_text)
            completion = text.finish(
                pieces, max_tokens=config.max_output_tokens, stop=config.stop_sequences or []
            )
            reason = "MAX_TOKENS" if completion.finish_reason == "length" else "STOP"
            candidates.append(_Candidate(index, completion.pieces, reason, top_logprobs=top))
        return candidates

    def _answer(
        self, body: GenerateContentRequest, config: GenerationConfig, seed: bytes, user_text: str
    ) -> list[str]:
        n_tokens = self._config.default_answer_tokens
        results = [
            part.function_response.response
            for part in body.contents[-1].parts
            if part.function_response is not None
        ]
        if results:
            lead = "Tool result: " + " ".join(orjson.dumps(r).decode() for r in results)
            n_tokens = max(n_tokens, len(text.split_pieces(lead)))
        else:
            lead = text.echo_of(user_text)
        pieces = text.prose_pieces(seed, lead, n_tokens)
        if config.response_mime_type == "application/json":
            schema = config.response_schema or config.response_json_schema
            if schema and schema.get("properties"):
                value: Any = text.sample_object(schema, text.words_of(user_text))
            else:
                value = {"answer": "".join(pieces)}
            pieces = text.split_pieces(orjson.dumps(value).decode())
        return pieces


# ---------------------------------------------------------------- stream


class _StreamWriter:
    """Writes one answer as ``GenerateContentResponse`` fragments, one token per fragment."""

    def __init__(self, head: dict[str, Any], tokens: _Tokens, *, is_sse: bool) -> None:
        self._head = head
        self._tokens = tokens
        self._is_sse = is_sse

    async def send(
        self,
        request: web.Request,
        candidates: list[_Candidate],
        *,
        cut: StreamCut | None,
        delay_s: float,
    ) -> web.StreamResponse:
        total = sum(candidate.tokens for candidate in candidates)
        if not self._is_sse:
            # Without alt=sse Google answers one JSON array of every fragment.
            fragments = [self._fragment(c, p, r, total) for c in candidates for p, r in _steps(c)]
            return web.Response(body=orjson.dumps(fragments), content_type="application/json")
        response = web.StreamResponse(headers=_SSE_HEADERS)
        try:
            await response.prepare(request)
            await self._write_events(request, response, candidates, cut, delay_s, total)
        except ConnectionResetError:
            pass  # the client went away mid-stream, as clients do; nothing left to answer
        return response

    async def _write_events(
        self,
        request: web.Request,
        response: web.StreamResponse,
        candidates: list[_Candidate],
        cut: StreamCut | None,
        delay_s: float,
        completion_tokens: int,
    ) -> None:
        sent = 0
        for candidate in candidates:
            for pieces, finish_reason in _steps(candidate):
                if cut is not None and (finish_reason is not None or sent == cut.after_chunks):
                    await cut.break_off(request)
                    return
                sent += 1
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                fragment = self._fragment(candidate, pieces, finish_reason, completion_tokens)
                await response.write(b"data: " + orjson.dumps(fragment) + b"\r\n\r\n")
        await response.write_eof()

    def _fragment(
        self,
        candidate: _Candidate,
        pieces: tuple[str, ...],
        finish_reason: str | None,
        completion_tokens: int,
    ) -> dict[str, Any]:
        """One fragment; ``completion_tokens`` (the whole answer's) shows on the last only."""
        usage = _usage(self._tokens, completion_tokens)
        if finish_reason is None:
            # Google reports only the prompt's count until the last fragment.
            usage = {
                "promptTokenCount": self._tokens.prompt,
                "totalTokenCount": self._tokens.prompt,
            }
        return {
            "candidates": [_candidate_object(candidate, pieces, finish_reason)],
            "usageMetadata": usage,
            **self._head,
        }


def _steps(candidate: _Candidate) -> Iterator[tuple[tuple[str, ...], str | None]]:
    """The fragments of one candidate: a piece each, the last with the finish reason."""
    if candidate.call is not None or not candidate.pieces:
        yield (), candidate.finish_reason
        return
    *body, last = candidate.pieces
    for piece in body:
        yield (piece,), None
    yield (last,), candidate.finish_reason


# ---------------------------------------------------------------- helpers


def _candidate_object(
    candidate: _Candidate, pieces: tuple[str, ...], finish_reason: str | None
) -> dict[str, Any]:
    if candidate.call is not None:
        part: dict[str, Any] = {"functionCall": candidate.call}
        if candidate.signature is not None:
            part["thoughtSignature"] = candidate.signature
        parts = [part]
    else:
        parts = [{"text": "".join(pieces)}]
    out: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish_reason is not None:
        out["finishReason"] = finish_reason
    out["index"] = candidate.index
    if candidate.top_logprobs is not None and pieces:
        out["logprobsResult"] = logprobs_result(pieces, candidate.top_logprobs)
    return out


@dataclass(frozen=True, slots=True)
class _Tokens:
    """What an answer's usage counts besides its own tokens."""

    prompt: int
    thoughts: int


def _usage(tokens: _Tokens, completion_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": tokens.prompt,
        "candidatesTokenCount": completion_tokens,
        "totalTokenCount": tokens.prompt + completion_tokens + tokens.thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens.prompt}],
    }
    if tokens.thoughts:
        usage["thoughtsTokenCount"] = tokens.thoughts
    return usage


def _budget_and_level(config: ThinkingConfig | None) -> tuple[int | None, str | None]:
    return (None, None) if config is None else (config.thinking_budget, config.thinking_level)


def _sent_content(content: Content) -> SentContent:
    calls = [
        SentCall(part.function_call.name, part.function_call.args or {}, part.thought_signature)
        for part in content.parts
        if part.function_call is not None
    ]
    is_user_message = content.role in (None, "user") and any(
        part.function_response is None for part in content.parts
    )
    return SentContent(content.role, is_user_message, calls)


def _last_user_text(contents: Sequence[Content]) -> str:
    for content in reversed(contents):
        if content.role in (None, "user"):
            texts = [part.text for part in content.parts if part.text]
            if texts:
                return " ".join(texts)
    return ""


def _chosen_function(body: GenerateContentRequest) -> FunctionDeclaration | None:
    functions = [f for tool in body.tools or [] for f in tool.function_declarations or []]
    calling = body.tool_config.function_calling_config if body.tool_config else None
    mode = calling.mode if calling is not None else "AUTO"
    last = body.contents[-1]
    answers_call = any(part.function_response is not None for part in last.parts)
    if not functions or mode == "NONE" or last.role == "model" or answers_call:
        return None
    allowed = calling.allowed_function_names if calling is not None else None
    if not allowed:
        return functions[0]
    for function in functions:
        if function.name == allowed[0]:
            return function
    raise RequestRefusedError(
        f"* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
        f"function {allowed[0]!r} is not declared"
    )


def _prompt_tokens(body: GenerateContentRequest) -> int:
    contents = list(body.contents)
    if body.system_instruction is not None:
        contents.append(body.system_instruction)
    tokens = 0
    for content in contents:
        tokens += text.MESSAGE_OVERHEAD_TOKENS
        for part in content.parts:
            if part.text is not None:
                tokens += text.count_tokens(part.text)
            elif part.inline_data is not None or part.file_data is not None:
                tokens += text.IMAGE_TOKENS
            else:
                tokens += text.count_tokens(msgspec.json.encode(part).decode())
    if body.tools:
        tokens += text.count_tokens(msgspec.json.encode(body.tools).decode())
    return tokens
