"""Who a request is made for: the principal behind an API key.

The authenticator (`pipeline/auth.py`) makes one from a key; model routing checks which public
models it may use, the cache scopes entries by its user or team, and the gateway hands its user,
tier and key limits to the limiter. It lives below all of them, next to the config it refers
to, so that none of them depends on the pipeline that authenticates.
"""

from __future__ import annotations

from dataclasses import dataclass

from stellara.config.models import TierConfig


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a key. `allowed_models` None means every public model; `tier` is
    the key's tier, used when the limits config gives the user none; `limits` are the key's
    own limits, checked in addition to the user's tier."""

    user: str
    key_id: str
    allowed_models: frozenset[str] | None = None
    is_master: bool = False
    tier: str | None = None
    team: str | None = None
    key_prefix: str | None = None
    expires_at: float | None = None  # epoch seconds
    limits: TierConfig | None = None
    may_pin_variants: bool = False  # may pin an experiment's variant or opt out of it

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models
