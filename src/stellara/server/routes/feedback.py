"""`POST /v1/feedback`: a client reports a metric on an answer (`experiments.feedback`).

Any key that calls models may rate its own user's requests, by the `x-stellara-request-id` of
the answer; the metrics and their types are the config's `feedback.metrics`.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from stellara.server.intake import decode_body, json_response, read_body
from stellara.server.schemas import FeedbackReceipt, FeedbackRequest
from stellara.server.spec import Access, Call, Reply, Route

FEEDBACK = "/v1/feedback"
_MAX_BODY_BYTES = 4096  # three short fields
_decoder = msgspec.json.Decoder(FeedbackRequest)


async def post_feedback(call: Call) -> web.StreamResponse:
    body = decode_body(_decoder, await read_body(call, _MAX_BODY_BYTES))
    accepted = await call.runtime.feedback.submit(
        call.caller, body.request_id, body.metric, body.value
    )
    receipt = FeedbackReceipt(
        accepted.request_id,
        accepted.metric,
        accepted.value,
        accepted.experiment,
        accepted.variant,
    )
    return json_response(call, msgspec.to_builtins(receipt))


ROUTES = (
    Route(
        "POST",
        FEEDBACK,
        post_feedback,
        Access.MODEL,
        "Report a feedback metric (thumbs, rating, task success, a judge's score) on an answer",
        Reply("The stored value", FeedbackReceipt),
        body=FeedbackRequest,
        example={"request_id": "req_0123456789abcdef", "metric": "thumbs_up", "value": True},
        errors={
            400: "an unknown metric, or a value of the wrong type or range",
            403: "the master key, without server.master_key_model_calls",
            404: "no request of that id by the caller's user has been recorded",
            413: "a body over 4 KiB",
            429: None,
            502: None,
            503: "the usage store is unavailable",
            504: None,
        },
    ),
)
