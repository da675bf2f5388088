"""Virtual API keys in SQL: created, read, changed and revoked by the admin API and CLI, and
looked up by digest when a caller presents one.

A key is shown once, when created; the store keeps its SHA-256 digest and a short prefix for
people to recognise it by.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from stellara.errors import StoreUnavailableError
from stellara.store.db import Database
from stellara.store.tables import api_keys

KEY_PREFIX = "sk-stl-"
VISIBLE_CHARS = 12  # "sk-stl-" and five random characters


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One virtual key as stored (never the key itself). Times are epoch seconds."""

    key_id: str
    digest: str
    prefix: str
    user: str
    team: str | None
    tier: str | None
    models: tuple[str, ...] | None
    limits: Mapping[str, Any] | None
    name: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    may_pin_variants: bool = False  # may pin an experiment's variant (`x-stellara-variant`)

    def is_active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def public(self) -> dict[str, Any]:
        """What the admin API shows: everything but the digest."""
        fields = _fields(self)
        del fields["digest"]
        return fields


def key_digest(key: str) -> str:
    """Keys are looked up by digest, so plaintext keys need not stay in memory or in SQL."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh key: the prefix and 192 random bits (32 URL-safe characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


class KeyStore:
    """Virtual keys on one `Database`. Every failure of the database raises
    `StoreUnavailableError` (503), with the database named but no secret."""

    _CHANGEABLE = frozenset(
        {"user", "team", "tier", "models", "limits", "name", "expires_at", "may_pin_variants"}
    )

    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(
        self,
        *,
        user: str,
        now: float,
        team: str | None = None,
        tier: str | None = None,
        models: Sequence[str] | None = None,
        limits: Mapping[str, Any] | None = None,
        name: str | None = None,
        expires_at: float | None = None,
        may_pin_variants: bool = False,
    ) -> tuple[str, KeyRecord]:
        """A new key and its record; the key is not stored and cannot be shown again."""
        key = new_key()
        record = KeyRecord(
            key_id="key_" + uuid.uuid4().hex[:20],
            digest=key_digest(key),
            prefix=key[:VISIBLE_CHARS],
            user=user,
            team=team,
            tier=tier,
            models=tuple(models) if models is not None else None,
            limits=dict(limits) if limits is not None else None,
            name=name,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
            may_pin_variants=may_pin_variants,
        )
        values = _row_values(record)
        try:
            async with self._db.engine.begin() as connection:
                await connection.execute(insert(api_keys).values(**values))
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return key, record

    async def get(self, key_id: str) -> KeyRecord | None:
        return await self._one(api_keys.c.key_id == key_id)

    async def find(self, digest: str) -> KeyRecord | None:
        """The key with this digest, revoked and expired ones included (the caller decides)."""
        return await self._one(api_keys.c.digest == digest)

    async def list(
        self, *, user: str | None = None, include_revoked: bool = False, limit: int = 1000
    ) -> list[KeyRecord]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id).limit(limit)
        if user is not None:
            query = query.where(api_keys.c.user_id == user)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        try:
            async with self._db.engine.connect() as connection:
                rows = (await connection.execute(query)).all()
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return [_record(row) for row in rows]

    async def update(self, key_id: str, changes: Mapping[str, Any]) -> KeyRecord | None:
        """Apply `changes` (field → new value, None clears); None when no such key."""
        unknown = set(changes) - self._CHANGEABLE
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
        values = {_COLUMN.get(name, name): value for name, value in changes.items()}
        if "models" in values and values["models"] is not None:
            values["models"] = list(values["models"])
        if values:
            try:
                async with self._db.engine.begin() as connection:
                    await connection.execute(
                        update(api_keys).where(api_keys.c.key_id == key_id).values(**values)
                    )
            except (SQLAlchemyError, OSError) as exc:
                raise self._unavailable(exc) from exc
        return await self.get(key_id)

    async def revoke(self, key_id: str, now: float) -> KeyRecord | None:
        """Mark the key revoked (kept for the audit trail); None when no such key. Revoking
        twice keeps the first time."""
        try:
            async with self._db.engine.begin() as connection:
                await connection.execute(
                    update(api_keys)
                    .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return await self.get(key_id)

    async def _one(self, condition: Any) -> KeyRecord | None:
        try:
            async with self._db.engine.connect() as connection:
                row = (await connection.execute(select(api_keys).where(condition))).first()
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return _record(row) if row is not None else None

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        reason = type(exc.__cause__ or exc).__name__
        return StoreUnavailableError(f"The key store ({self._db.where}) is unavailable: {reason}.")


_COLUMN = {"user": "user_id"}


def _fields(record: KeyRecord) -> dict[str, Any]:
    """The record as plain values (lists and dicts, not tuples and mappings)."""
    fields = {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}
    if record.models is not None:
        fields["models"] = list(record.models)
    if record.limits is not None:
        fields["limits"] = dict(record.limits)
    return fields


def _row_values(record: KeyRecord) -> dict[str, Any]:
    fields = _fields(record)
    fields["user_id"] = fields.pop("user")
    return fields


def _record(row: Row[Any]) -> KeyRecord:
    mapping = row._mapping
    models = mapping["models"]
    return KeyRecord(
        key_id=mapping["key_id"],
        digest=mapping["digest"],
        prefix=mapping["prefix"],
        user=mapping["user_id"],
        team=mapping["team"],
        tier=mapping["tier"],
        models=tuple(models) if models is not None else None,
        limits=mapping["limits"],
        name=mapping["name"],
        created_at=mapping["created_at"],
        expires_at=mapping["expires_at"],
        revoked_at=mapping["revoked_at"],
        may_pin_variants=bool(mapping["may_pin_variants"]),
    )
