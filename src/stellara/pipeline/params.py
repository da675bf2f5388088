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

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Generic, NamedTuple, TypeVar, overload

import msgspec
from msgspec import UNSET

from stellara.errors import InvalidRequestError
from stellara.providers import provider_types
from stellara.providers.params import ParamPolicy, Unsupported, called_names
from stellara.routing.models import Target
from stellara.schema.chat import ChatRequest
from stellara.schema.embeddings import EmbeddingsRequest

R = TypeVar("R", ChatRequest, EmbeddingsRequest)


class ParamFit(NamedTuple, Generic[R]):
    """What one target is sent, and what was dropped from it; or why it cannot be sent."""

    request: R
    dropped: tuple[str, ...] = ()
    refusal: InvalidRequestError | None = None


class ParamGuard:
    """The provider types' policies, chat and embeddings, by config `type`. One per app."""

    def __init__(
        self,
        chat: Mapping[str, ParamPolicy],
        embeddings: Mapping[str, ParamPolicy] | None = None,
    ) -> None:
        self._chat = _Watch(ChatRequest, chat)
        self._embeddings = _Watch(EmbeddingsRequest, embeddings or {})

    @classmethod
    def for_registry(cls) -> ParamGuard:
        """The guard of every registered provider type's policies."""
        kinds = provider_types()
        return cls(
            {name: kind.params for name, kind in kinds.items()},
            {n: k.embedding_params for n, k in kinds.items() if k.embedding_params is not None},
        )

    @overload
    def plan(
        self, request: ChatRequest, names: Mapping[str, str] | None = None
    ) -> RequestParams[ChatRequest] | None: ...

    @overload
    def plan(
        self, request: EmbeddingsRequest, names: Mapping[str, str] | None = None
    ) -> RequestParams[EmbeddingsRequest] | None: ...

    def plan(
        self, request: ChatRequest | EmbeddingsRequest, names: Mapping[str, str] | None = None
    ) -> RequestParams[ChatRequest] | RequestParams[EmbeddingsRequest] | None:
        """The request's fitting per target; None when it sets no parameter that any provider
        type may not honour (then every target is sent the request as it is). `names` are
        the inbound dialect's names of parameters, for refusals."""
        if isinstance(request, ChatRequest):
            return self._chat.plan(request, names or {})
        return self._embeddings.plan(request, names or {})


class _Watch(Generic[R]):
    """The parameters of one kind of request some provider may not honour, their values when
    absent, and those providers' rules for each, read from a request's fields as one tuple
    (in C), so a request that sets none of them is let through at once."""

    def __init__(self, kind: type[R], policies: Mapping[str, ParamPolicy]) -> None:
        self._policies = dict(policies)
        self._defaults = {f.name: f.default for f in msgspec.structs.fields(kind)}
        names = sorted({name for policy in policies.values() for name in policy.checked})
        positions = {name: at for at, name in enumerate(kind.__struct_fields__)}
        self._pick = _picker([positions[name] for name in names])
        self._absent = tuple(self._defaults[name] for name in names)
        self._rules = tuple(
            tuple(p.rule(name) for p in policies.values() if name in p.checked) for name in names
        )

    def plan(self, request: R, names: Mapping[str, str]) -> RequestParams[R] | None:
        values = self._pick(msgspec.structs.astuple(request))
        if values == self._absent:
            return None
        for value, rules in zip(values, self._rules, strict=True):
            if value is None or value is UNSET:
                continue
            for rule in rules:
                if rule.is_asked(value):
                    return RequestParams(request, self._policies, names, self._defaults)
        return None


def _picker(positions: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """The items at `positions` of a tuple, as a tuple (`itemgetter` returns one bare)."""
    if len(positions) > 1:
        return itemgetter(*positions)
    return lambda values: tuple(values[at] for at in positions)


class RequestParams(Generic[R]):
    """One request's fit to each target, worked out once per provider and drop setting."""

    def __init__(
        self,
        request: R,
        policies: Mapping[str, ParamPolicy],
        names: Mapping[str, str],
        defaults: Mapping[str, Any],
    ) -> None:
        self._request: R = request
        self._policies = policies
        self._names = names
        self._defaults = defaults
        self._fits: dict[tuple[str, bool], ParamFit[R]] = {}

    def fit(self, target: Target) -> ParamFit[R]:
        key = (target.adapter.id, target.drop_unsupported_params)
        fit = self._fits.get(key)
        if fit is None:
            fit = self._fits[key] = self._fit(target)
        return fit

    def refusal(self, target: Target) -> InvalidRequestError | None:
        """Why `target` cannot be sent the request; None when it can."""
        return self.fit(target).refusal

    def _fit(self, target: Target) -> ParamFit[R]:
        policy = self._policies.get(target.provider_type)
        unsupported = policy.unsupported(self._request) if policy is not None else ()
        if not unsupported:
            return ParamFit(self._request)
        refused = [u for u in unsupported if u.rule.handling == "refused"]
        if refused or not target.drop_unsupported_params:
            return ParamFit(
                self._request, refusal=_refusal(target, refused or unsupported, self._names)
            )
        dropped = tuple(name for u in unsupported for name in called_names(u.name, u.value))
        replaced = {u.name: self._defaults[u.name] for u in unsupported}
        return ParamFit(msgspec.structs.replace(self._request, **replaced), dropped)


def _refusal(
    target: Target, unsupported: Sequence[Unsupported], names: Mapping[str, str]
) -> InvalidRequestError:
    """The 400 naming the parameters, as the client called them, and the provider (`param`:
    the first of them)."""
    provider = f"the provider {target.adapter.id!r} ({target.provider_type})"
    first = unsupported[0]
    called = dict.fromkeys(  # once each
        names.get(name, name) for u in unsupported for name in called_names(u.name, u.value)
    )
    param = next(iter(called))
    if len(called) > 1:
        listed = ", ".join(map(repr, called))
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
        them = "them" if len(called) > 1 else "it"
        hint = f"; {remove}, or set drop_unsupported_params: true to have the gateway drop {them}."
    else:
        hint = f"; {remove}."
    return InvalidRequestError(what + hint, param=param, code="unsupported_parameter")
