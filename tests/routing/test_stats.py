from stellara.routing.models import Target
from stellara.routing.stats import RouterStats, target_key

from .test_models import FakeAdapter

A = Target(FakeAdapter("a"), "openai", "gpt-4o")


def test_target_key_is_provider_and_model():
    assert target_key(A) == "a/gpt-4o"


def test_stats_snapshot_is_json_ready():
    stats = RouterStats()
    stats.started(A)
    stats.finished(A, 0.0, ok=True, total_s=0.25, ttfb_s=0.25 / 4)
    snap = stats.snapshot()
    assert snap == {
        "a/gpt-4o": {
            "ewma_ttfb_ms": 62.5,
            "ewma_total_ms": 250.0,
            "ewma_error": 0.0,
            "in_flight": 0,
            "samples": 1,
        }
    }
