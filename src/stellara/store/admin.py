"""Key administration shared by the admin API (`server/routes_keys.py`) and the CLI: opening
the configured store, the checks a key's fields must pass against the config, and how a key
is shown. Both front ends call these, so a key made either way obeys the same rules and reads
the same.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from stellara.config.models import StellaraConfig, TierConfig
from stellara.errors import InvalidRequestError, StoreUnavailableError
from stellara.store.db import Database
from stellara.store.keys import KeyRecord, KeyStore
from stellara.store.migrate import MigrationError, upgrade

# The sizes of the `api_keys` columns: PostgreSQL refuses longer values (a 503 instead of a 400).
MAX_TEXT_CHARS = {"user": 256, "team": 256, "name": 256, "tier": 64}
KEY_FIELDS = frozenset(
    {"user", "team", "tier", "models", "limits", "name", "expires_at", "may_pin_variants"}
)
# The config loader accepts this tier undefined (its users are not limited); keys may name it too.
IMPLICIT_TIER = "default"
# 9999-12-31T23:59:59Z: the last instant ISO-8601 (and `datetime`) can show.
LATEST_EPOCH_S = 253_402_300_799.0


@asynccontextmanager
async def open_database(url: str) -> AsyncIterator[Database]:
    """The database at `url`, migrated to the newest schema, closed on exit.

    Raises `StoreUnavailableError` (one line, no secret) when it cannot be reached or migrated.
    """
    database = Database(url)
    try:
        try:
            await upgrade(database)
        except (SQLAlchemyError, OSError, MigrationError) as exc:
            raise _unopened(database, exc) from exc
        yield database
    finally:
        await database.close()


async def upgrade_database(url: str) -> tuple[str | None, str | None]:
    """Migrate the database at `url` to the newest schema; its revision before and after
    (None: an empty database). Raises `StoreUnavailableError` as `open_database` does."""
    database = Database(url)
    try:
        return await upgrade(database)
    except (SQLAlchemyError, OSError, MigrationError) as exc:
        raise _unopened(database, exc) from exc
    finally:
        await database.close()


def _unopened(database: Database, exc: BaseException) -> StoreUnavailableError:
    """The innermost error says what is wrong (`database "x" does not exist`, `Connect call
    failed`); drivers name the database, role or address there, never the password."""
    inner = exc
    while (cause := inner.__cause__ or inner.__context__) is not None:
        inner = cause
    detail = (str(inner).splitlines() or [""])[0][:200]
    reason = f"{type(inner).__name__}: {detail}" if detail else type(inner).__name__
    return StoreUnavailableError(f"The database {database.where} cannot be opened ({reason}).")


@asynccontextmanager
async def open_key_store(config: StellaraConfig) -> AsyncIterator[KeyStore]:
    """The key store of `usage_store.url`, for admin tools that run outside a gateway."""
    async with open_database(config.usage_store.url) as database:
        yield KeyStore(database)


def check_key_fields(
    config: StellaraConfig, fields: Mapping[str, Any], *, now: float, is_new: bool
) -> dict[str, Any]:
    """`fields` as a client sent them (name → value; None clears) checked against `config`
    and converted to what `KeyStore.create` / `update` take. A new key (`is_new`) must name a
    user and may not expire in the past; a change may set a past expiry (it expires the key
    at once). Raises `InvalidRequestError` naming the first problem."""
    unknown = sorted(set(fields) - KEY_FIELDS)
    if unknown:
        known = ", ".join(sorted(KEY_FIELDS))
        raise InvalidRequestError(
            f"Unknown field {unknown[0]!r} (fields: {known}).", param=unknown[0]
        )
    if is_new and "user" not in fields:
        raise InvalidRequestError("A key needs a 'user'.", param="user")
    checked: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "models":
            checked[name] = _models(config, value)
        elif name == "limits":
            checked[name] = _limits(value)
        elif name == "expires_at":
            checked[name] = _expiry(value, now, is_new)
        elif name == "may_pin_variants":
            if not isinstance(value, bool):
                raise InvalidRequestError(f"'{name}' must be true or false.", param=name)
            checked[name] = value
        else:
            text = _text(name, value, nullable=name != "user")
            if name == "tier" and text is not None:
                _check_tier(config, text)
            checked[name] = text
    return checked


def _text(name: str, value: object, *, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        also = " or null" if nullable else ""
        raise InvalidRequestError(f"'{name}' must be a string{also}.", param=name)
    if not value.strip():
        hint = " (use null to clear it)" if nullable else ""
        raise InvalidRequestError(f"'{name}' must not be empty{hint}.", param=name)
    limit = MAX_TEXT_CHARS[name]
    if len(value) > limit:
        raise InvalidRequestError(f"'{name}' is longer than {limit} characters.", param=name)
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise InvalidRequestError(f"'{name}' must not contain NUL characters.", param=name)
    return value


def _check_tier(config: StellaraConfig, tier: str) -> None:
    tiers = config.limits.tiers
    if tiers and tier != IMPLICIT_TIER and tier not in tiers:
        names = ", ".join(sorted(tiers))
        raise InvalidRequestError(f"Unknown tier {tier!r} (tiers: {names}).", param="tier")


def _models(config: StellaraConfig, value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        message = "'models' must be a list of public model names, or null for every model."
        raise InvalidRequestError(message, param="models")
    if not value:
        message = "'models' must name at least one model (null allows every model)."
        raise InvalidRequestError(message, param="models")
    public = {model.name for model in config.models}
    for name in value:
        if name not in public:
            names = ", ".join(sorted(public)) or "none configured"
            raise InvalidRequestError(f"Unknown model {name!r} (models: {names}).", param="models")
    return list(dict.fromkeys(value))


def _limits(value: object) -> dict[str, Any] | None:
    """The key's own limits in the shape of a tier; what the client left out stays out, so an
    explicit null (which removes a tier's limit in an override) is kept."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequestError("'limits' must be an object (a tier's shape) or null.")
    per_tier_only = sorted(set(value) & {"burst", "shadow"})
    if per_tier_only:
        raise InvalidRequestError(
            f"A key's limits take 'rate' and 'quota'; '{per_tier_only[0]}' is set per tier.",
            param="limits",
        )
    try:
        limits = TierConfig.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(["limits", *(str(part) for part in error["loc"])]) + f": {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidRequestError(f"Invalid limits: {problems}.", param="limits") from exc
    return limits.model_dump(exclude_unset=True)


def _expiry(value: object, now: float, is_new: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        epoch_s = parse_time(value, "expires_at")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        epoch_s = float(value)
    else:
        message = "'expires_at' must be an ISO-8601 time, epoch seconds, or null."
        raise InvalidRequestError(message, param="expires_at")
    if not (math.isfinite(epoch_s) and 0 < epoch_s <= LATEST_EPOCH_S):
        raise InvalidRequestError("'expires_at' is out of range.", param="expires_at")
    if is_new and epoch_s <= now:
        message = f"'expires_at' ({iso_utc(epoch_s)}) is in the past."
        raise InvalidRequestError(message, param="expires_at")
    return epoch_s


def parse_time(text: str, name: str) -> float:
    """Epoch seconds of an ISO-8601 time; one without a UTC offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        message = f"'{name}' is not an ISO-8601 time (e.g. 2030-01-31T12:00:00Z): {text!r}."
        raise InvalidRequestError(message, param=name) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


def key_status(record: KeyRecord, now: float) -> str:
    if record.revoked_at is not None:
        return "revoked"
    return "active" if record.is_active(now) else "expired"


def key_view(record: KeyRecord, now: float) -> dict[str, Any]:
    """What admin tools show of a key: `KeyRecord.public()` with its times as ISO-8601 UTC
    (`*_at`, for people) and epoch seconds (`*_at_epoch_s`, for programs), as the management
    routes show times, plus its `status` at `now`: active, expired or revoked."""
    view = record.public()
    for name in ("created_at", "expires_at", "revoked_at"):
        epoch_s = view[name]
        view[name] = iso_utc(epoch_s) if epoch_s is not None else None
        view[f"{name}_epoch_s"] = epoch_s
    view["status"] = key_status(record, now)
    return view
