"""Settings of a simulator, and loading fault rules from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import orjson
import yaml

from stellara.sim.faults import FaultRule


class SimConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How a simulator behaves when nothing goes wrong, plus its initial fault rules.

    Attributes:
        latency_ms: Fixed delay before answering each model request.
        per_token_ms: Delay per generated token: before each streamed content chunk, or in
            total before a non-stream answer.
        api_key: The only bearer token accepted. When ``None`` any token is accepted, but a
            request without an ``Authorization`` header is still refused with 401.
        faults: Fault rules in force at start; tests can replace them over HTTP.
        default_answer_tokens: Length of an answer when ``max_tokens`` does not cut it.
    """

    latency_ms: float = 0.0
    per_token_ms: float = 0.0
    api_key: str | None = None
    faults: list[FaultRule] = msgspec.field(default_factory=list)
    default_answer_tokens: int = 24

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.per_token_ms < 0:
            raise ValueError("latency_ms and per_token_ms must not be negative")
        if self.default_answer_tokens < 1:
            raise ValueError("default_answer_tokens must be at least 1")


def parse_faults(data: Any) -> list[FaultRule]:
    """Validate fault rules given as ``{"faults": [...]}`` or as a bare list.

    Raises:
        ValueError: The data is not a list of valid rules; the message names the bad field.
    """
    if isinstance(data, dict):
        data = data.get("faults", [])
    try:
        return msgspec.convert(data, list[FaultRule])
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid fault rules: {exc}") from exc


def load_faults(path: str | Path) -> list[FaultRule]:
    """Read fault rules from a YAML (``.yaml``/``.yml``) or JSON file holding ``{faults: [...]}``.

    Raises:
        OSError: The file cannot be read.
        ValueError: The file is not valid YAML/JSON or holds invalid rules; the message starts
            with the path.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw) if path.suffix in (".yaml", ".yml") else orjson.loads(raw)
        return parse_faults(data)
    except (yaml.YAMLError, orjson.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
