"""Who is calling: a bearer key → the principal it stands for."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from stellara.config.models import KeyConfig
from stellara.errors import AuthenticationError


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a key. `allowed_models` None means every public model; `tier` is
    the key's tier, used when the limits config gives the user none."""

    user: str
    key_id: str
    allowed_models: frozenset[str] | None = None
    is_master: bool = False
    tier: str | None = None
    team: str | None = None

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


def key_digest(key: str) -> str:
    """Keys are looked up by digest, so plaintext keys need not stay in memory or in SQL."""
    return hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    """Resolves bearer keys: the master key, and the static keys of the config."""

    def __init__(self, master_key: str | None, keys: Iterable[KeyConfig]) -> None:
        self._master_digest = key_digest(master_key).encode() if master_key else None
        self._by_digest: dict[str, Principal] = {}
        for key in keys:
            digest = key_digest(key.key.get_secret_value())
            allowed = frozenset(key.models) if key.models is not None else None
            self._by_digest[digest] = Principal(
                key.user, digest[:12], allowed, tier=key.tier, team=key.team
            )

    def add(self, key: str, principal: Principal) -> None:
        """Accept one more key (the demo key, keys created at run time)."""
        self._by_digest[key_digest(key)] = principal

    def authenticate(self, token: str | None) -> Principal:
        """The principal for `token`; raises `AuthenticationError` for a missing or bad key."""
        if not token:
            raise AuthenticationError(
                "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'."
            )
        principal = self._by_digest.get(key_digest(token))
        if principal is not None:
            return principal
        if self.is_master(token):
            return Principal("admin", "master", None, is_master=True)
        raise AuthenticationError("Invalid API key.")

    def is_master(self, token: str | None) -> bool:
        return bool(
            token
            and self._master_digest is not None
            and hmac.compare_digest(key_digest(token).encode(), self._master_digest)
        )
