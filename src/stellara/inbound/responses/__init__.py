"""The OpenAI Responses dialect ⇄ the canonical (Chat Completions-shaped) types.

Pure translators for `POST /v1/responses`, in the order a route uses them: `input_items` (the
request's items as they are stored: normalized, with ids), `to_chat_request` (instructions, the
conversation so far and this turn as one canonical request), then `to_response` for a whole
answer or a `ResponsesStreamWriter` for a streamed one, and `conversation` for the canonical
messages to store for the next turn. No I/O and no clock: item ids are derived from the
response id (so a response and its stream name items alike), times are handed in.

Every request parameter of the spec is honoured or refused with a 400 naming it:

- Sent as their canonical equivalents: `max_output_tokens` (as `max_completion_tokens`),
  `temperature`, `top_p`, `user`, `safety_identifier`, `prompt_cache_key`, `service_tier`,
  `reasoning.effort` (`reasoning_effort`), `text.verbosity`, `text.format`
  (`response_format`; `text`, the default, is not sent), function `tools` (`strict` as
  given), `tool_choice` (`allowed_tools` narrows the tools sent to those it names, with its
  mode), `parallel_tool_calls` (only with tools: OpenAI refuses it without), `stream` (the
  canonical stream always asks for usage, which `response.completed` reports).
- `instructions` become a system message first, never stored: OpenAI does not carry them
  over `previous_response_id`.
- Kept by the gateway, not sent: `metadata` (echoed and stored with the response; OpenAI's
  Chat Completions refuses `metadata` without its own `store`), `store` and
  `previous_response_id` (the route's), `truncation: "disabled"` (the default: an input past
  the context window fails, as on OpenAI).
- `include: reasoning.encrypted_content` puts the provider's signature of each thinking block
  in its reasoning item (`_reasoning`).
- Accepted because there is nothing to do: `max_tool_calls` (it bounds built-in tools, which
  never run here); `include` entries for built-in tools (outputs the canonical path never
  produces) and `message.input_image.image_url` (input items are stored as sent);
  `reasoning.summary` (thinking comes back as the provider gives it, whatever the level);
  `stream_options.include_obfuscation: false` (deltas are never padded).
- Refused: `background: true`, `conversation`, `prompt`, `context_management`, `moderation`,
  `prompt_cache_options`, `prompt_cache_retention`, `truncation: "auto"`, `top_logprobs` > 0
  and `include: message.output_text.logprobs` (canonical logprobs are not translated),
  `reasoning.mode`, `reasoning.context`, `stream_options.include_obfuscation: true`, tools
  other than functions (built-in, MCP, custom tools run only on OpenAI's own Responses API)
  and tool choices naming them, the function-tool fields `defer_loading`, `output_schema`,
  `allowed_callers`, and `tool_choice` `required` or naming a function without such a tool
  (OpenAI refuses those too).

Where the two formats do not line up:

- A string input is one user message, a string content one text part, and an assistant's
  `input_text` an `output_text`: stored items have the shape OpenAI's input item list has.
- `function_call` items following each other (or an assistant message of the same turn)
  become one assistant message with tool calls; each `function_call_output` a tool message,
  which must answer a call made before it, in this input or in the stored conversation.
  Images and files in an output move to a user message after the tool messages, in order
  (canonical tool messages hold text only).
- The canonical answer's thinking blocks are `reasoning` items ahead of the message, streamed
  with the reasoning summary events; a `reasoning` item handed back with its encrypted content
  becomes the thinking block of the assistant message that follows (`_reasoning`). Other
  reasoning items and an assistant message's `phase` are stored but not sent: only the
  provider that made them could read them, and the canonical form has no place for `phase`.
- `item_reference` is refused (the store keeps conversations, not items by id); images by
  `file_id`, `detail: "original"`, files by `file_url` and a file `detail` other than `auto`
  too. A file by `file_id` is sent as a file id, which only OpenAI can resolve.
- An assistant message's text parts are concatenated as they are; system and developer
  messages keep their parts.
- Finish reasons: `stop` and `tool_calls` complete the response; `length` leaves it
  incomplete for `max_output_tokens`, `content_filter` for `content_filter` (its items then
  say `incomplete` too).
- Usage: `input_tokens` include cached tokens (as OpenAI counts them);
  `cache_write_tokens` is 0, which the canonical usage does not report.
- `service_tier` in an answer is the provider's, when it is one of the spec's values.
"""

from stellara.inbound.responses._answer import to_response, usage_of
from stellara.inbound.responses._items import input_items
from stellara.inbound.responses._messages import conversation
from stellara.inbound.responses._request import PARAM_NAMES, to_chat_request
from stellara.inbound.responses._stream import ResponsesStreamWriter

__all__ = [
    "PARAM_NAMES",
    "ResponsesStreamWriter",
    "conversation",
    "input_items",
    "to_chat_request",
    "to_response",
    "usage_of",
]
