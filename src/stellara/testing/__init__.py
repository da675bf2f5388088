"""Test doubles and builders for Stellara's own tests and for anyone testing an integration
with it, without sockets and without a test framework of choice imposed (no pytest import).

- `ManualClock`: time that moves only when the test says (every part that takes a `clock`).
- `ScriptedAdapter`, `ScriptedEmbeddingsAdapter`: providers that answer from a script —
  completions, errors, streams that end, break or stall — and record what they were asked.
- `EventRecorder`: everything published on an `EventBus`, to assert on.
- `scripted_gateway`: the request path (`Gateway`) over scripted providers, built from a
  config as the running gateway is, to test how requests go and end without sockets.
- builders of canonical values with sensible defaults: `chat_request`, `chat_completion`,
  `stream_chunks`, `usage`, `embeddings_response`, `request_context`, and the request events
  `request_completed` / `request_failed`.
"""

from stellara.testing._adapter import (
    Answer,
    ScriptedAdapter,
    ScriptedCall,
    ScriptedEmbeddingsAdapter,
    ScriptedStream,
    Stall,
    Step,
)
from stellara.testing._clock import ManualClock
from stellara.testing._events import EventRecorder, request_completed, request_failed
from stellara.testing._gateway import scripted_gateway
from stellara.testing._values import (
    chat_completion,
    chat_request,
    embeddings_response,
    request_context,
    stream_chunks,
    usage,
)

__all__ = [
    "Answer",
    "EventRecorder",
    "ManualClock",
    "ScriptedAdapter",
    "ScriptedCall",
    "ScriptedEmbeddingsAdapter",
    "ScriptedStream",
    "Stall",
    "Step",
    "chat_completion",
    "chat_request",
    "embeddings_response",
    "request_completed",
    "request_context",
    "request_failed",
    "scripted_gateway",
    "stream_chunks",
    "usage",
]
