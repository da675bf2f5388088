"""`cost_floor` on a model entry: its shape, and only with `strategy: cost`."""

import textwrap

import pytest

from stellara.assembly.config import parse_config
from stellara.config.models import CostFloorConfig
from stellara.routing.models import ModelTable
from tests.routing.test_models import FakeAdapter

from .test_loader import problems_of

PROVIDERS = """
providers:
  - {id: openai, type: openai, api_key: sk-upstream-1}
feedback:
  metrics: {thumbs_up: {type: boolean}}
"""


def model_entry(floor: str, strategy: str | None = "cost") -> str:
    """A config with one model `chat` of `strategy` (None: the default) and `cost_floor`."""
    chosen = "" if strategy is None else f"strategy: {strategy}, "
    return PROVIDERS + textwrap.dedent(
        f"""
        models:
          - {{name: chat, {chosen}cost_floor: {floor},
             targets: [{{provider: openai, model: mini}}, {{provider: openai, model: big}}]}}
        """
    )


def test_cost_floor_parses_latency_and_feedback_parts():
    config = parse_config(
        model_entry("{p95_ms: 800, metric: thumbs_up, min_mean: 0.6}"), environ={}
    )
    floor = config.models[0].cost_floor
    assert floor == CostFloorConfig(p95_ms=800.0, metric="thumbs_up", min_mean=0.6)
    assert floor is not None
    assert floor.min_samples == 30


def test_cost_floor_reaches_the_public_model():
    config = parse_config(model_entry("{p95_ms: 800}"), environ={})
    table = ModelTable(config.models, {"openai": FakeAdapter("openai")}, {"openai": "openai"})
    public = table.get("chat")
    assert public is not None
    assert public.cost_floor == CostFloorConfig(p95_ms=800.0)


def test_cost_floor_with_another_strategy_is_a_config_error():
    problems = problems_of(model_entry("{p95_ms: 800}", strategy="performance"))
    assert problems == [
        "models[0].cost_floor: Value error, only valid with `strategy: cost` "
        "(this model's is performance)"
    ]


def test_cost_floor_with_the_default_strategy_is_a_config_error():
    problems = problems_of(model_entry("{p95_ms: 800}", strategy=None))
    assert problems == [
        "models[0].cost_floor: Value error, only valid with `strategy: cost` "
        "(this model's is priority)"
    ]


@pytest.mark.parametrize(
    ("floor", "problem"),
    [
        ("{}", "Value error, set p95_ms, or metric and min_mean, or both"),
        ("{metric: thumbs_up}", "Value error, metric and min_mean are set together"),
        ("{p95_ms: 800, min_mean: 0.6}", "Value error, metric and min_mean are set together"),
        ("{p95_ms: 0}", "Input should be greater than 0"),
        ("{p95_ms: 800, ms: 1}", "unknown key"),
    ],
)
def test_cost_floor_incomplete_or_wrong_is_a_config_error(floor, problem):
    problems = problems_of(model_entry(floor))
    assert len(problems) == 1
    assert problems[0].startswith("models[0].cost_floor")
    assert problems[0].endswith(f": {problem}")
