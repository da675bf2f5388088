"""Rate limits, burst detection and quotas: which limits apply (`policy`), what a request
will use (`estimate`, `outputs`) and reserves (`fit`), the admit/settle stage (`limiter`) and
the headers that report it."""

from stellara.limits.estimate import Estimator, PriceKey, RequestEstimate, actual_amounts
from stellara.limits.events import LimitEvents
from stellara.limits.fit import reserve
from stellara.limits.headers import format_duration, ratelimit_headers
from stellara.limits.limiter import Limiter, Ticket
from stellara.limits.outputs import OutputHistory
from stellara.limits.policy import EffectivePolicy, LimitsPolicy

__all__ = [
    "EffectivePolicy",
    "Estimator",
    "LimitEvents",
    "Limiter",
    "LimitsPolicy",
    "OutputHistory",
    "PriceKey",
    "RequestEstimate",
    "Ticket",
    "actual_amounts",
    "format_duration",
    "ratelimit_headers",
    "reserve",
]
