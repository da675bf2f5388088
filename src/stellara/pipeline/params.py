"""The parameter-policy stage: per attempt, what of the request the target's provider honours.

A request is checked against the policy of the provider type of each target it is about to
be sent to (`providers.params`), as routing and fallbacks may pick a provider of another type
than the first. A target whose provider cannot honour a parameter the request sets, when its
model does not allow dropping, is skipped like a target whose breaker is open (the route
header says why); only when no target could take the request is the refusal the answer: a 400
naming the parameter and the provider. When dropping is allowed, the target is sent the
request without those parameters, and the answer lists them (`x-stellara-dropped-params`).

The common request sets no parameter any provider type lacks: one pass over a handful of
fields finds that, and its attempts then cost nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import msgspec
from msgspec import UNSET

from stellara.errors import InvalidRequestError
from stellara.providers import provider_types
from stellara.providers.params import ParamPolicy, Unsupported
from stellara.routing.models import Target
from stellara.schema.chat import ChatRequest

_DEFAULTS: Mapping[str, Any] = {f.name: f.default for f in msgspec.structs.fields(ChatRequest)}


class ParamFit(NamedTuple):
    """What one target is sent, and what was dropped from it; or why it cannot be sent."""

    request: ChatRequest
    dropped: tuple[str, ...] = ()
    refusal: InvalidRequestError | None = None


class ParamGuard:
    """The provider types' policies, by config `type`. One per app."""

    def __init__(self, policies: Mapping[str, ParamPolicy]) -> None:
        self._policies = dict(policies)
        names = sorted({name for policy in policies.values() for name in policy.checked})
        # Each parameter some provider may not honour, with those providers' rules for it.
        self._watched = tuple(
            (name, tuple(p.rule(name) for p in policies.values() if name in p.checked))
            for name in names
        )

    @classmethod
    def for_registry(cls) -> ParamGuard:
        """The guard of every registered provider type's policy."""
        return cls({name: kind.params for name, kind in provider_types().items()})

    def plan(
        self, request: ChatRequest, names: Mapping[str, str] | None = None
    ) -> RequestParams | None:
        """The request's fitting per target; None when it sets no parameter that any provider
        type may not honour (then every target is sent the request as it is). `names` are
        the inbound dialect's names of parameters, for refusals."""
        for name, rules in self._watched:
            value = getattr(request, name)
            if value is None or value is UNSET:
                continue
            if any(rule.is_asked(value) for rule in rules):
                return RequestParams(request, self._policies, names or {})
        return None


class RequestParams:
    """One request's fit to each target, worked out once per provider and drop setting."""

    def __init__(
        self,
        request: ChatRequest,
        policies: Mapping[str, ParamPolicy],
        names: Mapping[str, str],
    ) -> None:
        self._request = request
        self._policies = policies
        self._names = names
        self._fits: dict[tuple[str, bool], ParamFit] = {}

    def fit(self, target: Target) -> ParamFit:
        key = (target.adapter.id, target.drop_unsupported_params)
        fit = self._fits.get(key)
        if fit is None:
            fit = self._fits[key] = self._fit(target)
        return fit

    def refusal(self, target: Target) -> InvalidRequestError | None:
        """Why `target` cannot be sent the request; None when it can."""
        return self.fit(target).refusal

    def _fit(self, target: Target) -> ParamFit:
        policy = self._policies.get(target.provider_type)
        unsupported = policy.unsupported(self._request) if policy is not None else ()
        if not unsupported:
            return ParamFit(self._request)
        refused = [u for u in unsupported if u.rule.handling == "refused"]
        if refused or not target.drop_unsupported_params:
            return ParamFit(
                self._request, refusal=_refusal(target, refused or unsupported, self._names)
            )
        dropped = tuple(u.name for u in unsupported)
        request = msgspec.structs.replace(self._request, **{n: _DEFAULTS[n] for n in dropped})
        return ParamFit(request, dropped)


def _refusal(
    target: Target, unsupported: Sequence[Unsupported], names: Mapping[str, str]
) -> InvalidRequestError:
    """The 400 naming the parameters, as the client called them, and the provider (`param`:
    the first of them)."""
    provider = f"the provider {target.adapter.id!r} ({target.provider_type})"
    first = unsupported[0]
    param = names.get(first.name, first.name)
    if len(unsupported) > 1:
        listed = ", ".join(repr(names.get(u.name, u.name)) for u in unsupported)
        what = f"The parameters {listed} cannot be honoured by {provider}"
        remove = "remove them"
    elif first.rule.at_most is not None:
        bound = f"{first.rule.at_most:g}"
        what = f"{param} {first.value!r} is above {bound}, the most {provider} takes"
        remove = "lower it"
    else:
        note = f" ({first.rule.note})" if first.rule.note else ""
        what = f"The parameter {param!r} cannot be honoured by {provider}{note}"
        remove = "remove it"
    if first.rule.handling == "droppable":
        them = "them" if len(unsupported) > 1 else "it"
        hint = f"; {remove}, or set drop_unsupported_params: true to have the gateway drop {them}."
    else:
        hint = f"; {remove}."
    return InvalidRequestError(what + hint, param=param, code="unsupported_parameter")
