"""What a request reserves in its caller's limits, and which requests can never fit them.

A token or cost limit has a whole size: a window holds at most `limit` tokens at once, a quota
`limit` per period. A request whose reservation exceeds that size is refused by the store
every time, and a 429's `Retry-After` would promise what no wait can deliver. So:

- a request that sets no output ceiling reserves its prompt plus the answer it is expected to
  use (`limits.estimate`), but never more than its tightest limit could ever hold: a guess is
  capped, and the settle corrects it to the truth;
- a request that cannot fit whatever the wait (its prompt alone, or its prompt plus the
  ceiling it asked for, larger than a limit's whole size) is refused at once with a 400 that
  names the limit and says what to change.

A request refused only because a limit is full at the moment still reaches the store, which
answers 429 with the wait until it has room. In shadow mode nothing is refused: the store
counts the request and reports the limit it would have broken.
"""

from __future__ import annotations

from collections.abc import Mapping

from stellara.errors import InvalidRequestError
from stellara.limits.denial import EPSILON
from stellara.limits.estimate import PriceKey, RequestEstimate
from stellara.limits.policy import EffectivePolicy
from stellara.state.base import Amounts, Limit, WindowLimit

CODE = "request_exceeds_limit"
PER = {"daily": "a day", "monthly": "a month", "session": "per session"}


def reserve(
    estimate: RequestEstimate,
    policy: EffectivePolicy,
    param_names: Mapping[str, str] | None = None,
) -> Amounts:
    """What `estimate`'s request reserves in `policy`'s limits. `param_names` are the inbound
    dialect's names of canonical parameters, so a refusal names the one the client sent.

    Raises:
        InvalidRequestError: The request can never fit one of `policy`'s token or cost limits.
    """
    price = estimate.price
    if not policy.needs_estimate or price is None:
        return {"requests": 1.0}
    names = param_names or {}
    output = _output_within(estimate, policy, names)
    return {
        "requests": 1.0,
        "tokens": float(estimate.prompt_tokens + output),
        "cost_usd": _cost_within(estimate, price, policy, output, names),
    }


def _output_within(
    estimate: RequestEstimate, policy: EffectivePolicy, names: Mapping[str, str]
) -> int:
    """The answer's tokens to reserve: the request's ceiling, or its expected length capped
    by what the tightest token limit holds beside the prompt."""
    output, param = estimate.output_tokens, estimate.ceiling_param
    limit = policy.tightest("tokens")
    if limit is None:
        return output
    prompt = estimate.prompt_tokens
    room = int(limit.limit + EPSILON) - prompt
    if not policy.is_shadow and room < 0:
        raise InvalidRequestError(
            f"The prompt alone is {prompt} tokens, more than {_described(limit)} can ever "
            "hold; shorten the prompt.",
            code=CODE,
        )
    if param is None:
        return max(0, min(output, room))
    if not policy.is_shadow and output > room:
        name = names.get(param, param)
        raise InvalidRequestError(
            f"This request may use {prompt + output} tokens ({prompt} of prompt plus {name} "
            f"{output}), more than {_described(limit)} can ever hold; set {name} to at most "
            f"{room} or shorten the prompt.",
            param=name,
            code=CODE,
        )
    return output


def _cost_within(
    estimate: RequestEstimate,
    price: PriceKey,
    policy: EffectivePolicy,
    output: int,
    names: Mapping[str, str],
) -> float:
    """The cost to reserve for `output` tokens of answer at `price`: the estimate, or, for an
    expected answer, at most what the tightest cost limit holds."""
    cost = estimate.usd_on(price.provider_type, price.model, output_tokens=output) or 0.0
    limit = policy.tightest("cost_usd")
    if limit is None or cost <= limit.limit + EPSILON:
        return cost
    param = estimate.ceiling_param
    if not policy.is_shadow:
        prompt_cost = estimate.usd_on(price.provider_type, price.model, output_tokens=0) or 0.0
        if prompt_cost > limit.limit + EPSILON:
            raise InvalidRequestError(
                f"The prompt alone is estimated at ${prompt_cost:.4g}, more than "
                f"{_described(limit)} can ever hold; shorten the prompt.",
                code=CODE,
            )
        if param is not None:
            name = names.get(param, param)
            raise InvalidRequestError(
                f"This request may cost ${cost:.4g} ({estimate.prompt_tokens} tokens of prompt "
                f"plus {name} {output}), more than {_described(limit)} can ever hold; lower "
                f"{name} or shorten the prompt.",
                param=name,
                code=CODE,
            )
    return limit.limit if param is None else cost


def _described(limit: Limit) -> str:
    """`limit` as a refusal names it: `the limit rate:tokens (500 tokens per 60 s)`."""
    if limit.dimension == "cost_usd":
        amount = f"${limit.limit:g}"
    else:
        amount = f"{limit.limit:.0f} {limit.dimension}"
    per = f"per {limit.window_s:g} s" if isinstance(limit, WindowLimit) else PER[limit.period]
    return f"the limit {limit.name} ({amount} {per})"
