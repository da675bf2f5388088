"""The Gemini API wire format: `models/{model}:generateContent` and `:streamGenerateContent`.

:class:`GoogleSim` answers ``POST /v1beta/models/{model}:generateContent`` (and ``/v1/…``) with a
``GenerateContentResponse``; ``:streamGenerateContent?alt=sse`` streams one response fragment per
token as ``data: {...}\\r\\n\\r\\n`` events, the last one with the ``finishReason`` and full usage
(without ``alt=sse`` the fragments come back as one JSON array, as Google does).

Like Google, it is strict where Gemini is strict, so adapters cannot get away with what the real
API refuses: unknown request fields, schema keywords Gemini's ``Schema`` lacks (such as
``additionalProperties``), an ``OBJECT`` without properties, empty ``parts`` and unknown roles are
400 ``INVALID_ARGUMENT``. A missing API key is 403 ``PERMISSION_DENIED``, a wrong one 400 with
``ErrorInfo.reason`` ``API_KEY_INVALID``, as Google answers them.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import orjson
from aiohttp import web

from stellara.sim import text
from stellara.sim.config import SimConfig
from stellara.sim.faults import StreamCut
from stellara.sim.google_embeddings import answer_embeddings

_T = TypeVar("_T")
_PATH = re.compile(
    r"/v1(?:beta|alpha)?/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|batchEmbedContents|embedContent)$"
)
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_UNKNOWN_FIELD = re.compile(
    r"Object contains unknown field `(?P<field>[^`]+)`(?: - at `\$\.?(?P<at>[^`]*)`)?"
)
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_SCHEMA_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})
_SCHEMA_KEYS = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
        "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
        "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
    }
)  # fmt: skip

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


# ---------------------------------------------------------------- request


class _Strict(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Gemini refuses fields it does not know: "Invalid JSON payload received. Unknown name"."""


class _Blob(_Strict):
    mime_type: str
    data: str


class _FileData(_Strict):
    file_uri: str
    mime_type: str | None = None


class _FunctionCall(_Strict):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class _FunctionResponse(_Strict):
    name: str
    response: dict[str, Any]
    id: str | None = None


class _Part(_Strict):
    text: str | None = None
    inline_data: _Blob | None = None
    file_data: _FileData | None = None
    function_call: _FunctionCall | None = None
    function_response: _FunctionResponse | None = None
    thought: bool | None = None
    thought_signature: str | None = None
    executable_code: msgspec.Raw | None = None
    code_execution_result: msgspec.Raw | None = None
    video_metadata: msgspec.Raw | None = None


class _Content(_Strict):
    parts: list[_Part] = msgspec.field(default_factory=list)
    role: str | None = None


class _FunctionDeclaration(_Strict):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None
    response: msgspec.Raw | None = None
    behavior: str | None = None


class _Tool(_Strict):
    function_declarations: list[_FunctionDeclaration] | None = None
    google_search: msgspec.Raw | None = None
    code_execution: msgspec.Raw | None = None
    url_context: msgspec.Raw | None = None


class _FunctionCallingConfig(_Strict):
    mode: str = "AUTO"
    allowed_function_names: list[str] | None = None


class _ToolConfig(_Strict):
    function_calling_config: _FunctionCallingConfig | None = None


class _GenerationConfig(_Strict):
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    candidate_count: int | None = None
    max_output_tokens: int | None = None
    stop_sequences: list[str] | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_logprobs: bool | None = None
    logprobs: int | None = None
    response_modalities: list[str] | None = None
    thinking_config: msgspec.Raw | None = None
    media_resolution: str | None = None
    speech_config: msgspec.Raw | None = None


class _Request(_Strict):
    contents: list[_Content] = msgspec.field(default_factory=list)
    system_instruction: _Content | None = None
    tools: list[_Tool] | None = None
    tool_config: _ToolConfig | None = None
    generation_config: _GenerationConfig | None = None
    safety_settings: list[dict[str, Any]] | None = None
    cached_content: str | None = None
    labels: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class _Candidate:
    index: int
    pieces: tuple[str, ...]
    finish_reason: str
    call: dict[str, Any] | None = None  # a `functionCall` part's value

    @property
    def tokens(self) -> int:
        if self.call is not None:
            return text.count_tokens(orjson.dumps(self.call["args"]).decode())
        return len(self.pieces)


class _InvalidRequestError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
        self._decoder = msgspec.json.Decoder(_Request)

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
            body = _decode(self._decoder, raw)
            _validate(body)
            candidates = self._candidates(body)
        except _InvalidRequestError as exc:
            return _error(400, exc.message)
        head = {"modelVersion": model, "responseId": self._response_id()}
        prompt_tokens = _prompt_tokens(body)
        if is_stream:
            writer = _StreamWriter(head, prompt_tokens, is_sse=request.query.get("alt") == "sse")
            delay_s = self._config.per_token_ms / 1000
            return await writer.send(request, candidates, cut=cut, delay_s=delay_s)
        completion_tokens = sum(candidate.tokens for candidate in candidates)
        if self._config.per_token_ms > 0:
            await asyncio.sleep(self._config.per_token_ms * completion_tokens / 1000)
        answer = {
            "candidates": [_candidate_object(c, c.pieces, c.finish_reason) for c in candidates],
            "usageMetadata": _usage(prompt_tokens, completion_tokens),
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

    def _candidates(self, body: _Request) -> list[_Candidate]:
        prompt = msgspec.json.encode(body.contents)
        config = body.generation_config or _GenerationConfig()
        user_text = _last_user_text(body.contents)
        function = _chosen_function(body)
        candidates = []
        for index in range(config.candidate_count or 1):
            seed = text.seed_of(prompt, index.to_bytes(2, "little"))
            if function is not None:
                args = text.sample_object(function.parameters or {}, text.words_of(user_text))
                call = {"name": function.name, "args": args}
                candidates.append(_Candidate(index, (), "STOP", call))
                continue
            pieces = self._answer(body, config, seed, user_text)
            completion = text.finish(
                pieces, max_tokens=config.max_output_tokens, stop=config.stop_sequences or []
            )
            reason = "MAX_TOKENS" if completion.finish_reason == "length" else "STOP"
            candidates.append(_Candidate(index, completion.pieces, reason))
        return candidates

    def _answer(
        self, body: _Request, config: _GenerationConfig, seed: bytes, user_text: str
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

    def __init__(self, head: dict[str, Any], prompt_tokens: int, *, is_sse: bool) -> None:
        self._head = head
        self._prompt_tokens = prompt_tokens
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
        usage = _usage(self._prompt_tokens, completion_tokens)
        if finish_reason is None:
            # Google reports only the prompt's count until the last fragment.
            usage = {
                "promptTokenCount": self._prompt_tokens,
                "totalTokenCount": self._prompt_tokens,
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
        parts: list[dict[str, Any]] = [{"functionCall": candidate.call}]
    else:
        parts = [{"text": "".join(pieces)}]
    out: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish_reason is not None:
        out["finishReason"] = finish_reason
    out["index"] = candidate.index
    return out


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": completion_tokens,
        "totalTokenCount": prompt_tokens + completion_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }


def _decode(decoder: msgspec.json.Decoder[_T], raw: bytes) -> _T:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        unknown = _UNKNOWN_FIELD.search(str(exc))
        if unknown is not None:
            at = unknown.group("at") or ""
            message = (
                f'Invalid JSON payload received. Unknown name "{unknown.group("field")}" '
                f"at '{at}': Cannot find field."
            )
            raise _InvalidRequestError(message) from exc
        raise _InvalidRequestError(f"Invalid JSON payload received. {exc}") from exc
    except msgspec.DecodeError as exc:
        raise _InvalidRequestError(f"Invalid JSON payload received. {exc}") from exc


def _validate(body: _Request) -> None:
    if not body.contents:
        raise _InvalidRequestError("* GenerateContentRequest.contents: contents is not specified")
    for at, content in enumerate(body.contents):
        if content.role not in (None, "user", "model"):
            raise _InvalidRequestError("Please use a valid role: user, model.")
        if not content.parts:
            raise _InvalidRequestError(
                f"* GenerateContentRequest.contents[{at}].parts: contents.parts must not be empty."
            )
    for t, tool in enumerate(body.tools or []):
        for f, function in enumerate(tool.function_declarations or []):
            if function.parameters is not None:
                where = f"tools[{t}].function_declarations[{f}].parameters"
                _validate_schema(function.parameters, where)
    config = body.generation_config
    if config is not None and config.response_schema is not None:
        _validate_schema(config.response_schema, "generation_config.response_schema")


def _validate_schema(schema: Mapping[str, Any], where: str) -> None:
    """Refuse what Gemini's OpenAPI-subset ``Schema`` refuses, with Google's messages."""
    for key in schema:
        if key not in _SCHEMA_KEYS:
            raise _InvalidRequestError(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': "
                "Cannot find field."
            )
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.lower() not in _SCHEMA_TYPES):
        raise _InvalidRequestError(
            f"Invalid JSON payload received. Invalid value at '{where}.type' ({kind!r})"
        )
    properties = schema.get("properties")
    if isinstance(kind, str) and kind.lower() == "object" and not properties:
        raise _InvalidRequestError(
            f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type"
        )
    subschemas = [(f"{where}.items", schema.get("items"))]
    if isinstance(properties, Mapping):
        subschemas += [(f"{where}.properties[{n}].value", s) for n, s in properties.items()]
    options = schema.get("anyOf")
    if isinstance(options, list):
        subschemas += [(f"{where}.any_of[{k}]", option) for k, option in enumerate(options)]
    for sub_where, sub in subschemas:
        if isinstance(sub, Mapping):
            _validate_schema(sub, sub_where)


def _last_user_text(contents: Sequence[_Content]) -> str:
    for content in reversed(contents):
        if content.role in (None, "user"):
            texts = [part.text for part in content.parts if part.text]
            if texts:
                return " ".join(texts)
    return ""


def _chosen_function(body: _Request) -> _FunctionDeclaration | None:
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
    raise _InvalidRequestError(
        f"* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
        f"function {allowed[0]!r} is not declared"
    )


def _prompt_tokens(body: _Request) -> int:
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
