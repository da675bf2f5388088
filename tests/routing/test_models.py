from collections.abc import AsyncGenerator

import pytest

from stellara.config.models import ModelConfig, TargetConfig
from stellara.errors import ModelNotFoundError, PermissionDeniedError
from stellara.principal import Principal
from stellara.providers.base import ProviderAdapter
from stellara.routing.models import ModelTable, PublicModel
from stellara.schema.chat import ChatCompletion, ChatCompletionChunk, ChatRequest


class FakeAdapter:
    """Just enough of a `ProviderAdapter` to be a target; the table never calls it."""

    def __init__(self, provider_id: str) -> None:
        self._id = provider_id

    @property
    def id(self) -> str:
        return self._id

    async def chat(self, request: ChatRequest, model: str, *, timeout_s: float) -> ChatCompletion:
        raise NotImplementedError

    async def chat_stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        raise NotImplementedError
        yield

    async def close(self) -> None:
        pass


ADAPTERS: dict[str, ProviderAdapter] = {"a": FakeAdapter("a"), "b": FakeAdapter("b")}
EVERYONE = Principal("alice", "k1")
CHEAP_ONLY = Principal("bob", "k2", frozenset({"cheap"}))


def table() -> ModelTable:
    models = [
        ModelConfig(
            name="smart",
            targets=[
                TargetConfig(provider="a", model="gpt-4o"),
                TargetConfig(provider="b", model="big"),
            ],
        ),
        ModelConfig(name="cheap", targets=[TargetConfig(provider="b", model="small")]),
        ModelConfig(name="zeta", targets=[TargetConfig(provider="a", model="z")]),
    ]
    return ModelTable(models, ADAPTERS, {"a": "openai", "b": "anthropic"})


def test_model_table_resolve_gives_targets_in_order():
    model = table().resolve(EVERYONE, "smart")
    assert isinstance(model, PublicModel)
    assert model.name == "smart"
    assert [(t.adapter.id, t.model) for t in model.targets] == [("a", "gpt-4o"), ("b", "big")]
    assert model.targets[0].adapter is ADAPTERS["a"]


def test_model_table_resolve_unknown_model_is_404():
    with pytest.raises(ModelNotFoundError) as info:
        table().resolve(EVERYONE, "nope")
    assert info.value.status_code == 404
    assert info.value.param == "model"
    assert info.value.code == "model_not_found"
    assert "'nope'" in info.value.message


def test_model_table_resolve_not_allowed_is_403():
    with pytest.raises(PermissionDeniedError) as info:
        table().resolve(CHEAP_ONLY, "smart")
    assert info.value.status_code == 403
    assert info.value.param == "model"
    assert "'smart'" in info.value.message


def test_model_table_resolve_allowed_restricted_key():
    assert table().resolve(CHEAP_ONLY, "cheap").targets[0].model == "small"


def test_model_table_unknown_model_is_404_even_for_restricted_key():
    with pytest.raises(ModelNotFoundError):
        table().resolve(CHEAP_ONLY, "nope")


def test_model_table_visible_to_in_config_order():
    assert table().visible_to(EVERYONE) == ["smart", "cheap", "zeta"]
    assert table().visible_to(CHEAP_ONLY) == ["cheap"]
    assert table().visible_to(Principal("carol", "k3", frozenset({"ghost"}))) == []


def test_model_table_empty():
    empty = ModelTable([], {}, {})
    assert empty.visible_to(EVERYONE) == []
    with pytest.raises(ModelNotFoundError):
        empty.resolve(EVERYONE, "smart")


def test_model_table_targets_carry_provider_type():
    model = table().resolve(EVERYONE, "smart")
    assert [t.provider_type for t in model.targets] == ["openai", "anthropic"]
