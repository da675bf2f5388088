"""`experiments:` and `feedback:` in the config: every problem reported with its path."""

from __future__ import annotations

from typing import Any

import pytest

from stellara.assembly.config import check_config
from stellara.errors import ConfigError


def config(*experiments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "providers": [{"id": "p", "type": "openai", "api_key": "k"}],
        "models": [
            {"name": "smart", "targets": [{"provider": "p", "model": "gpt-4o"}]},
            {"name": "cheap", "targets": [{"provider": "p", "model": "gpt-4o-mini"}]},
        ],
        "feedback": {"metrics": {"thumbs_up": {"type": "boolean"}}},
        "experiments": list(experiments),
        **extra,
    }


def experiment(**changes: Any) -> dict[str, Any]:
    return {
        "id": "e1",
        "model": "smart",
        "variants": [
            {"name": "control", "share": 50},
            {"name": "b", "share": 50, "model": "cheap"},
        ],
        **changes,
    }


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        check_config(raw)
    return caught.value.problems


def test_experiment_config_valid_one_is_taken() -> None:
    loaded = check_config(config(experiment(allocation="adaptive", metric="thumbs_up")))
    assert loaded.experiments[0].control_name == "control"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"model": "nope"}, "experiments[0].model: unknown model 'nope'"),
        ({"metric": "stars"}, "experiments[0].metric: no feedback metric is named 'stars'"),
        (
            {"variants": [{"name": "a", "share": 50}, {"name": "b", "share": 40}]},
            "variant shares must add up to 100, not 90",
        ),
        (
            {"variants": [{"name": "a", "share": 50}, {"name": "a", "share": 50}]},
            "variant names must be unique",
        ),
        ({"allocation": "adaptive"}, "adaptive allocation needs the `metric` it maximises"),
        ({"winner": "z"}, "winner: no variant is named 'z'"),
        (
            {
                "variants": [
                    {"name": "a", "share": 50},
                    {"name": "b", "share": 50, "targets": [{"provider": "x", "model": "m"}]},
                ]
            },
            "experiments[0].variants[1].targets[0].provider: unknown provider 'x'",
        ),
    ],
)
def test_experiment_config_problem_is_named(changes: dict[str, Any], expected: str) -> None:
    assert any(expected in problem for problem in problems(config(experiment(**changes))))


def test_experiment_config_two_live_on_one_model_and_duplicate_ids_are_refused() -> None:
    found = problems(config(experiment(), experiment(), experiment(id="e2")))
    assert "experiments[1].id: duplicate experiment id 'e1'" in found
    assert "experiments[2].model: another experiment on 'smart' is not stopped" in found
    assert check_config(config(experiment(), experiment(id="e2", status="stopped")))


def test_cost_floor_metric_must_be_a_feedback_metric() -> None:
    raw = config()
    raw["models"][1] |= {"strategy": "cost", "cost_floor": {"metric": "stars", "min_mean": 0.5}}
    assert problems(raw) == ["models[1].cost_floor.metric: no feedback metric is named 'stars'"]
