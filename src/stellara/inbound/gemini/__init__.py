"""The Gemini API dialect (`google-genai`) ⇄ the canonical (OpenAI-shaped) types.

Pure translators for the `/v1beta/models/…` routes: `to_chat_request` for `generateContent`
(and `:streamGenerateContent`, `:countTokens`), `to_generate_response` for a whole answer,
`GeminiStreamWriter` (one per request) for a streamed one, `to_embeddings_request` and its
answers for `:embedContent` / `:batchEmbedContents`, and `model_page` for the model list.
They never do I/O; the HTTP layer decodes, encodes and writes SSE.

Nothing a client sends is dropped in silence: the request types (`wire.google_inbound`) refuse
every field the canonical form cannot carry (`topK`, `safetySettings`, `thinkingConfig`,
`cachedContent`, tools other than functions, parts other than text, inline data, http(s)
image URLs and function calls/responses, …), and the translators refuse what the types let
through but the canonical form cannot say. Where the two formats do not line up:

- `systemInstruction`'s text parts are joined with newlines into one system message.
- A function call without an `id` gets one from its position; a `functionResponse` without
  one answers the earliest unanswered call of its name. A response `{"result": "<text>"}`
  (how Google's SDKs wrap a value) becomes the tool message's text, any other response its
  JSON. Answers carry the canonical call id in `functionCall.id`.
- `toolConfig` mode `ANY` with several `allowedFunctionNames` keeps only those functions and
  requires a call; with one name, that function is the tool choice.
- `responseSchema` (Gemini's OpenAPI subset) becomes a JSON Schema (`_schema`), sent as a
  `json_schema` response format named `response`; `responseJsonSchema` goes as it is.
- Finish reasons: `stop` and tool calls are `STOP`, `length` `MAX_TOKENS`, a refusal or
  `content_filter` `SAFETY`. `modelVersion` is the public model name asked for.
"""

from stellara.inbound.gemini._answer import to_generate_response, usage_metadata
from stellara.inbound.gemini._embed import (
    to_batch_embed_response,
    to_embed_response,
    to_embeddings_request,
)
from stellara.inbound.gemini._models import PublicModelInfo, model_page, model_resource
from stellara.inbound.gemini._request import PARAM_NAMES, to_chat_request
from stellara.inbound.gemini._stream import GeminiStreamWriter

__all__ = [
    "PARAM_NAMES",
    "GeminiStreamWriter",
    "PublicModelInfo",
    "model_page",
    "model_resource",
    "to_batch_embed_response",
    "to_chat_request",
    "to_embed_response",
    "to_embeddings_request",
    "to_generate_response",
    "usage_metadata",
]
