"""Every secret a config holds, for the scrubbers that keep them out of logs and answers."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, SecretStr
from yarl import URL


def secret_values(config: BaseModel) -> list[str]:
    """Every `SecretStr` in `config` (master, static and provider keys, webhook secrets, and
    whatever secret a provider type's settings add) and every password in a URL (Redis, the
    usage store), found by walking the model so a new secret field is never forgotten."""
    return sorted(set(_walk(config)))


def _walk(value: object) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, str) and "://" in value and "@" in value:
        password = _url_password(value)
        if password:
            yield password


def _url_password(text: str) -> str | None:
    try:
        return URL(text).password
    except ValueError:
        return None
