"""The `responses:` section: DESIGN §8's defaults, and the values it refuses."""

from __future__ import annotations

import textwrap

import pytest

from stellara.assembly.config import parse_config
from stellara.errors import ConfigError


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), environ={})
    return info.value.problems


def test_responses_config_defaults_store_for_30_days_up_to_a_gibibyte() -> None:
    responses = parse_config("{}", environ={}).responses
    assert responses.store is True
    assert responses.retention_s == 30 * 86_400
    assert responses.max_stored_bytes == 1024**3


def test_responses_config_parses_the_documented_shape() -> None:
    config = parse_config(
        "responses: {store: false, retention_s: 3600, max_stored_bytes: 2097152}", environ={}
    )
    assert (config.responses.store, config.responses.retention_s) == (False, 3600)
    assert config.responses.max_stored_bytes == 2 * 1024**2


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("responses: {retention_s: 0}", "responses.retention_s"),
        ("responses: {retention_s: 2592000000}", "responses.retention_s"),  # ms for s
        ("responses: {max_stored_bytes: 1000}", "responses.max_stored_bytes"),
        ("responses: {max_stored_bytes: 1.5}", "responses.max_stored_bytes"),
        ("responses: {store: maybe}", "responses.store"),
        ("responses: {retention: 60}", "responses.retention"),
    ],
)
def test_responses_config_refuses_out_of_range_and_unknown_keys(text: str, path: str) -> None:
    [problem] = problems_of(text)
    assert problem.startswith(f"{path}:")
