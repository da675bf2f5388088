"""The parameter policy: what each provider type does with each canonical request parameter.

Every provider type declares, as data in its own folder, one `ParamRule` per parameter of
`ChatRequest` (`POLICY_PARAMS`): the parameter is **passed** (sent under its own name, as
given), **translated** (sent in the provider's own terms), **droppable** (the provider has no
equivalent: refused with a 400 unless `drop_unsupported_params` is on, then not sent and
reported) or **refused** (dropping it would change the shape of the answer the client expects,
so it is refused even when dropping is on). The pipeline checks each attempt's target against
its provider type's policy (`pipeline/params.py`); `docs/reference/parameters.md` is written
from the same tables, and a test builds every provider's wire body to prove them true.

`model`, `messages`, `stream` and `stream_options` are the request itself, honoured for every
provider (the gateway streams and reports usage whatever the provider), so no policy lists
them; what a provider cannot take inside the messages is refused by its translator. Nor do
they list the deprecated `functions` and `function_call`, which the route turns into `tools`
and `tool_choice` (`inbound.functions`) before any policy is checked. A provider
type that serves embeddings has an embeddings policy too, over `EmbeddingsRequest`'s
parameters but `model` and `input` (`EMBEDDING_POLICY_PARAMS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import msgspec
from msgspec import UNSET, Raw

from stellara.schema.chat import ChatRequest
from stellara.schema.embeddings import EmbeddingsRequest

Handling = Literal["passed", "translated", "droppable", "refused"]

_ALWAYS_HONOURED = frozenset(
    {"model", "messages", "stream", "stream_options", "functions", "function_call"}
)
POLICY_PARAMS: tuple[str, ...] = tuple(
    f.name for f in msgspec.structs.fields(ChatRequest) if f.name not in _ALWAYS_HONOURED
)
"""The canonical parameters every provider type's policy must cover, in `ChatRequest` order."""
EMBEDDING_POLICY_PARAMS: tuple[str, ...] = tuple(
    f.name for f in msgspec.structs.fields(EmbeddingsRequest) if f.name not in ("model", "input")
)
"""The same for an embeddings policy, in `EmbeddingsRequest` order."""

_RAW_NULL = Raw(b"null")

UNKNOWN_PARAMS = "unknown_params"
"""The canonical request's undeclared fields, by their own names (`ChatRequest.unknown_params`):
one rule covers them all, and refusals and drops name each."""


def called_names(name: str, value: Any) -> tuple[str, ...]:
    """The names a set parameter stands for: its own, or each undeclared field's."""
    return tuple(value) if name == UNKNOWN_PARAMS else (name,)


class ParamRule(NamedTuple):
    """What one provider type does with one parameter.

    Attributes:
        handling: What happens when the request asks for it (see the module doc).
        note: How, in a few words, for the reference page (a translation's target, a reason).
        same_as_absent: Values that ask nothing of the provider beyond its default (`n: 1`,
            `logprobs: false`): never refused, never reported as dropped.
        at_most: For a number the provider takes up to a bound: values up to it are passed
            as given, and only larger ones get `handling`.
    """

    handling: Handling
    note: str = ""
    same_as_absent: tuple[Any, ...] = ()
    at_most: float | None = None

    def is_asked(self, value: Any) -> bool:
        """Whether a set `value` asks for what `handling` describes (not a harmless value)."""
        if value in self.same_as_absent:
            return False
        return self.at_most is None or value > self.at_most


PASSED = ParamRule("passed")


class Unsupported(NamedTuple):
    """A parameter a request sets that the target's provider type cannot honour."""

    name: str
    value: Any
    rule: ParamRule


class ParamPolicy:
    """One provider type's rules, by parameter name; checked on every attempt, so the check
    only reads the few parameters the provider cannot honour, and only their set values."""

    def __init__(
        self, rules: Mapping[str, ParamRule], *, params: tuple[str, ...] = POLICY_PARAMS
    ) -> None:
        """`params`: the parameters it rules on (`POLICY_PARAMS`: a chat policy)."""
        unknown = set(rules) - set(params)
        if unknown:
            raise ValueError(f"not canonical request parameters: {', '.join(sorted(unknown))}")
        self.params = params
        self.rules: Mapping[str, ParamRule] = MappingProxyType(dict(rules))
        self._checked = tuple(
            (name, rule)
            for name, rule in rules.items()
            if rule.handling in ("droppable", "refused")
        )
        self.checked = frozenset(name for name, _ in self._checked)
        """The parameters `unsupported` reads: those this provider may not honour."""

    @classmethod
    def relaying_all(cls, note: str, *, params: tuple[str, ...] = POLICY_PARAMS) -> ParamPolicy:
        """The policy of a provider whose wire format is the canonical one: all passed."""
        return cls({name: ParamRule("passed", note) for name in params}, params=params)

    def rule(self, name: str) -> ParamRule:
        """The rule for `name` (a policy that does not list it passes it)."""
        return self.rules.get(name, PASSED)

    def unsupported(self, request: msgspec.Struct) -> tuple[Unsupported, ...]:
        """The parameters `request` sets that this provider type cannot honour; usually none."""
        found: tuple[Unsupported, ...] = ()
        for name, rule in self._checked:
            value = getattr(request, name)
            if value is None or value is UNSET or (isinstance(value, Raw) and value == _RAW_NULL):
                continue
            if rule.is_asked(value):
                found += (Unsupported(name, value, rule),)
        return found
