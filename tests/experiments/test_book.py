"""`ExperimentBook`: what a request gets while an experiment runs, is paused, stopped or
pinned, and how adaptive allocation follows the shared rewards (SQL store, memory arms)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stellara.config.experiments import ExperimentConfig, FeedbackConfig
from stellara.config.models import ModelConfig
from stellara.errors import InvalidRequestError
from stellara.experiments.book import ExperimentBook
from stellara.principal import Principal
from stellara.routing.models import ModelTable
from stellara.schema.chat import SystemMessage
from stellara.state.memory import MemoryArmStore
from stellara.store.db import Database
from stellara.store.experiments import ExperimentStore
from stellara.store.migrate import upgrade
from stellara.testing import ManualClock, ScriptedAdapter, chat_request

MODELS = [
    ModelConfig.model_validate({"name": "smart", "targets": [{"provider": "a", "model": "big"}]}),
    ModelConfig.model_validate({"name": "brief", "targets": [{"provider": "b", "model": "s"}]}),
]
FEEDBACK = FeedbackConfig.model_validate({"metrics": {"thumbs_up": {"type": "boolean"}}})


def experiment(**changes: object) -> ExperimentConfig:
    raw: dict[str, object] = {
        "id": "cheap-vs-smart",
        "model": "smart",
        "metric": "thumbs_up",
        "variants": [
            {"name": "control", "share": 50},
            {"name": "mini", "share": 50, "targets": [{"provider": "b", "model": "mini"}]},
            {
                "name": "terse",
                "share": 0,
                "model": "brief",
                "overrides": {"system_prefix": "Be brief.", "temperature": 0.2},
            },
        ],
    }
    raw.update(changes)
    return ExperimentConfig.model_validate(raw)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ExperimentStore]:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    await upgrade(database)
    yield ExperimentStore(database)
    await database.close()


def book_of(
    config: ExperimentConfig, store: ExperimentStore, arms: MemoryArmStore
) -> ExperimentBook:
    adapters = {"a": ScriptedAdapter("a"), "b": ScriptedAdapter("b")}
    models = ModelTable(MODELS, adapters, {"a": "openai", "b": "anthropic"})
    return ExperimentBook([config], models, FEEDBACK, store=store, arms=arms, clock=ManualClock())


def user(name: str, *, may_pin: bool = False) -> Principal:
    return Principal(name, f"key-{name}", may_pin_variants=may_pin)


async def test_book_variants_route_and_override_the_request(store: ExperimentStore) -> None:
    book = book_of(experiment(), store, MemoryArmStore())
    smart = book._models.get("smart")
    assert smart is not None
    by_variant = {}
    for i in range(200):
        assignment = book.assign(user(f"u{i}"), None, "smart", None)
        assert assignment is not None
        assert assignment.is_counted
        by_variant[assignment.variant.name] = assignment.variant
    assert set(by_variant) == {"control", "mini"}  # a zero share is served to no one
    request = chat_request()
    model, sent = by_variant["mini"].apply(smart, request)
    assert [(t.adapter.id, t.model) for t in model.targets] == [("b", "mini")]
    assert (model.name, sent) == ("smart", request)
    pinned = book.assign(user("qa", may_pin=True), None, "smart", "terse")
    assert pinned is not None
    assert not pinned.is_counted
    model, sent = pinned.variant.apply(smart, request)
    assert model.name == "brief"
    assert sent.messages[0] == SystemMessage(content="Be brief.")
    assert sent.messages[1:] == request.messages
    assert sent.temperature == 0.2
    assert book.assign(user("qa", may_pin=True), None, "smart", "none") is None
    with pytest.raises(InvalidRequestError, match="no variant 'nope'"):
        book.assign(user("qa", may_pin=True), None, "smart", "nope")
    assert book.assign(user("u1"), None, "brief", None) is None  # no experiment on it


async def test_book_session_unit_needs_a_session(store: ExperimentStore) -> None:
    book = book_of(experiment(unit="session"), store, MemoryArmStore())
    assert book.assign(user("u1"), None, "smart", None) is None
    first = book.assign(user("u1"), "session-1", "smart", None)
    again = book.assign(user("u2"), "session-1", "smart", None)
    assert first is not None
    assert again is not None
    assert first.variant.name == again.variant.name


async def test_book_paused_serves_control_and_stopped_serves_the_winner_uncounted(
    store: ExperimentStore,
) -> None:
    book = book_of(experiment(), store, MemoryArmStore())
    await book.refresh()
    await store.set_status("cheap-vs-smart", "paused", None, 10.0)
    await book.refresh()
    names = [book.assign(user(f"u{i}"), None, "smart", None) for i in range(50)]
    assert {(a.variant.name, a.is_counted) for a in names if a is not None} == {("control", False)}
    await store.set_status("cheap-vs-smart", "stopped", "mini", 20.0)
    await book.refresh()
    served = [book.assign(user(f"u{i}"), None, "smart", None) for i in range(50)]
    assert {(a.variant.name, a.is_counted) for a in served if a is not None} == {("mini", False)}


async def test_book_config_status_applies_when_the_file_changes_it(
    store: ExperimentStore, tmp_path: Path
) -> None:
    """A restart keeps a stop made through the API; a changed status in the file wins."""
    await book_of(experiment(), store, MemoryArmStore()).refresh()
    await store.set_status("cheap-vs-smart", "stopped", "mini", 10.0)
    restarted = book_of(experiment(), store, MemoryArmStore())
    await restarted.refresh()
    live = restarted.get("cheap-vs-smart")
    assert live is not None
    assert (live.status, live.winner) == ("stopped", "mini")
    edited = book_of(experiment(status="paused"), store, MemoryArmStore())
    await edited.refresh()
    live = edited.get("cheap-vs-smart")
    assert live is not None
    assert live.status == "paused"


async def test_book_adaptive_allocation_follows_shared_rewards_and_keeps_the_floor(
    store: ExperimentStore,
) -> None:
    arms = MemoryArmStore()
    config = experiment(allocation="adaptive", min_share=10)
    first, second = book_of(config, store, arms), book_of(config, store, arms)
    for i in range(400):
        await first.reward("cheap-vs-smart", "control", "thumbs_up", float(i % 10 < 5), 0.0)
        await first.reward("cheap-vs-smart", "mini", "thumbs_up", float(i % 10 < 7), 0.0)
    await first.refresh()
    await second.refresh()
    shares = first.get("cheap-vs-smart").shares  # type: ignore[union-attr]
    assert shares == second.get("cheap-vs-smart").shares  # type: ignore[union-attr]
    assert shares["mini"] > 0.75
    assert shares["control"] == pytest.approx(0.10)
    assert shares["terse"] == 0.0  # a zero share stays off: only a pin reaches it
    served = Counter(
        a.variant.name
        for i in range(5_000)
        if (a := first.assign(user(f"u{i}"), None, "smart", None)) is not None
    )
    assert abs(served["mini"] / 5_000 - shares["mini"]) < 0.03
    # A metric it does not maximise, or a fixed experiment, moves nothing.
    await first.reward("cheap-vs-smart", "control", "rating", 5.0, 0.0)
    assert (await arms.read("cheap-vs-smart"))["control"].n == 400


async def test_book_leaves_out_a_stored_experiment_the_config_no_longer_serves(
    store: ExperimentStore,
) -> None:
    """Made through the admin API on a model a later config removed: the others still run."""
    gone = experiment(id="on-a-removed-model", model="removed")
    await store.create(gone, 1.0)
    book = book_of(experiment(), store, MemoryArmStore())
    await book.refresh()
    assert book.get("on-a-removed-model") is None
    assert book.get("cheap-vs-smart") is not None
