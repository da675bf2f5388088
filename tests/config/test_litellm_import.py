"""`stellara config import-litellm`: LiteLLM proxy configs become Stellara configs that pass
the loader's checks, with every setting left behind reported."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stellara.assembly.config import parse_config
from stellara.config import StellaraConfig
from stellara.config.litellm import Conversion, convert_file, convert_litellm, render
from stellara.errors import ConfigError

FIXTURES = Path(__file__).parent / "litellm"
STELLARA = [sys.executable, "-m", "stellara.cli"]


def environ_for(text: str) -> dict[str, str]:
    """A value for every `${VAR}` the converted config needs (those with a `:-default` keep
    it), shaped like the real thing."""
    values = {
        "AZURE_API_BASE": "https://acme.openai.azure.com",
        "AZURE_API_VERSION": "2024-10-21",
        "REDIS_HOST": "127.0.0.1",
    }
    names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)
    return {name: values.get(name, f"test-{name.lower()}-value") for name in names}


def checked(conversion: Conversion) -> StellaraConfig:
    text = render(conversion, source="config.yaml")
    return parse_config(text, environ=environ_for(text))


def convert(name: str) -> tuple[StellaraConfig, list[str]]:
    conversion = convert_file(FIXTURES / name)
    return checked(conversion), conversion.notes


def has_note(notes: list[str], path: str, text: str = "") -> bool:
    return any(note.startswith(f"{path}: ") and text in note for note in notes)


def test_import_simple_openai_keeps_names_env_keys_and_master_key() -> None:
    config, notes = convert("simple_openai.yaml")

    assert [m.name for m in config.models] == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
    assert [(p.id, p.type, p.base_url) for p in config.providers] == [("openai", "openai", None)]
    api_key = config.providers[0].api_key
    assert api_key is not None
    assert api_key.get_secret_value() == "test-openai_api_key-value"
    assert [t.model for m in config.models for t in m.targets] == [
        "gpt-4o",
        "gpt-4o-mini",
        "text-embedding-3-small",
    ]
    assert config.server.master_key is not None
    assert config.server.master_key.get_secret_value() == "sk-1234"
    assert config.server.master_key_model_calls
    assert config.resilience.timeout_s == 120
    assert has_note(notes, "model_list[1].litellm_params.temperature", "relays")
    assert has_note(notes, "model_list[2].model_info", "catalog")
    assert has_note(notes, "litellm_settings.drop_params")
    assert len(notes) == 3


def test_import_keeps_env_references_unresolved() -> None:
    text = render(convert_file(FIXTURES / "simple_openai.yaml"), source="config.yaml")

    assert "api_key: ${OPENAI_API_KEY}" in text
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        parse_config(text, environ={})


def test_import_load_balanced_weights_fallbacks_retries_and_breaker() -> None:
    config, notes = convert("load_balanced.yaml")

    models = {m.name: m for m in config.models}
    assert list(models) == ["gpt-4o", "claude-sonnet", "llama-local"]
    gpt = models["gpt-4o"]
    assert gpt.strategy == "weighted"
    assert [(t.provider, t.model, t.weight) for t in gpt.targets] == [
        ("openai", "gpt-4o", 600),
        ("azure-acme-eu", "gpt-4o-eu", 300),
        ("azure-acme-us", "gpt-4o-us", 300),
    ]
    assert gpt.fallbacks == ["claude-sonnet", "llama-local"]
    assert models["claude-sonnet"].fallbacks == []  # back to gpt-4o would be a cycle
    providers = {p.id: p for p in config.providers}
    azure_us = providers["azure-acme-us"].model_dump()
    assert azure_us["base_url"] == "https://acme-us.openai.azure.com"
    assert azure_us["api_version"] == "2024-10-21"  # an unquoted YAML date in the input
    local = providers["openai-local"]
    assert (local.type, local.base_url, local.api_key) == (
        "openai",
        "http://127.0.0.1:8000/v1",
        None,
    )
    resilience = config.resilience
    assert resilience.retry.max_attempts == 3
    assert resilience.timeout_s == 45
    breaker = resilience.circuit_breaker
    assert (breaker.failure_threshold, breaker.window_s, breaker.open_s, breaker.scope) == (
        4,
        60,
        30,
        "target",
    )
    assert has_note(notes, "model_list[5].litellm_params.model", "'bedrock' has no Stellara type")
    assert has_note(notes, "model_list[0].litellm_params.rpm", "weight")
    assert has_note(notes, "router_settings.fallbacks[1].claude-sonnet", "lead back")
    assert has_note(notes, "router_settings.context_window_fallbacks[1].titan", "not a converted")
    assert has_note(notes, "litellm_settings.num_retries", "router_settings.num_retries is used")


def test_import_azure_anthropic_gemini_with_environment_keys() -> None:
    config, notes = convert("azure_anthropic_gemini.yaml")

    providers = {p.id: p.model_dump() for p in config.providers}
    assert providers["azure"]["base_url"] == "https://acme.openai.azure.com"
    assert providers["azure"]["api_version"] == "2024-10-21"
    assert providers["azure"]["deployments"] == {"gpt-4o": "prod-gpt4o"}
    assert providers["anthropic-proxy"]["base_url"] == "https://anthropic-proxy.internal.example"
    assert providers["anthropic"]["base_url"] is None
    assert providers["google"]["type"] == "google"
    models = {m.name: m for m in config.models}
    assert [t.model for t in models["gpt-4o"].targets] == ["gpt-4o", "backup-gpt4o"]
    assert models["gpt-4o"].strategy == "performance"
    assert [t.provider for t in models["claude"].targets] == ["anthropic-proxy", "anthropic"]
    assert models["claude"].fallbacks == ["flash"]
    assert models["flash"].targets[0].model == "gemini-2.0-flash"
    assert config.server.master_key is not None
    assert config.server.master_key.get_secret_value() == "test-litellm_master_key-value"
    assert has_note(notes, "model_list[5].litellm_params.model", "'vertex_ai'")
    assert has_note(notes, "litellm_settings.fallbacks[1].flash", "'gemini-pro' is not")
    assert has_note(notes, "model_list[0].model_info.id")
    assert has_note(notes, "model_list[2].litellm_params.max_tokens")
    assert has_note(notes, "general_settings.database_url", "usage_store.url")
    assert has_note(notes, "general_settings.store_model_in_db")
    assert has_note(notes, "router_settings.routing_strategy_args")
    assert has_note(notes, "litellm_settings.success_callback", "telemetry")


def test_import_redis_cache_and_router_state() -> None:
    config, notes = convert("redis_cache.yaml")

    assert config.state.backend == "redis"
    assert config.state.redis_url == "redis://:test-redis_password-value@127.0.0.1:6379/0"
    assert config.cache is not None
    assert (config.cache.scope, config.cache.l1.ttl_s, config.cache.l2.ttl_s) == (
        "global",
        600,
        600,
    )
    assert not config.cache.semantic.enabled
    mini = config.models[0]
    assert mini.strategy == "weighted"  # usage-based routing falls back to the tpm weights
    assert [(t.provider, t.weight) for t in mini.targets] == [
        ("openai", 2_000_000),
        ("openai-2", 1_000_000),
    ]
    assert has_note(notes, "router_settings.routing_strategy", "no per-deployment TPM/RPM")
    assert has_note(notes, "litellm_settings.cache_params.namespace")
    assert has_note(notes, "litellm_settings.cache_params.supported_call_types")
    assert has_note(notes, "router_settings.enable_pre_call_checks")
    assert has_note(notes, "general_settings.alerting")
    assert has_note(notes, "environment_variables.REDIS_HOST", "export it")
    assert not any(note.startswith("router_settings.redis_") for note in notes)  # same Redis


@pytest.mark.parametrize(
    ("litellm", "stellara", "noted"),
    [
        ("simple-shuffle", "round_robin", False),
        ("least-busy", "least_busy", False),
        ("latency-based-routing", "performance", False),
        ("cost-based-routing", "cost", False),
        ("usage-based-routing", "round_robin", True),
        ("fastest-first", "round_robin", True),
    ],
)
def test_import_routing_strategy_maps(litellm: str, stellara: str, noted: bool) -> None:
    conversion = convert_litellm(f"""
model_list:
  - {{model_name: chat, litellm_params: {{model: openai/gpt-4o, api_key: sk-a}}}}
  - {{model_name: chat, litellm_params: {{model: anthropic/claude-sonnet-4-5, api_key: sk-b}}}}
  - {{model_name: solo, litellm_params: {{model: openai/gpt-4o-mini, api_key: sk-a}}}}
router_settings: {{routing_strategy: {litellm}}}
""")
    config = checked(conversion)

    assert config.models[0].strategy == stellara
    assert config.models[1].strategy == "priority"  # one target: nothing to choose
    assert has_note(conversion.notes, "router_settings.routing_strategy") == noted


def test_import_weights_are_noted_when_the_strategy_ignores_them() -> None:
    conversion = convert_litellm("""
model_list:
  - {model_name: chat, litellm_params: {model: gpt-4o, api_key: sk-a, weight: 3}}
  - {model_name: chat, litellm_params: {model: claude-sonnet-4-5, api_key: sk-b, weight: 1}}
router_settings: {routing_strategy: least-busy}
""")
    config = checked(conversion)

    assert [t.weight for t in config.models[0].targets] == [1.0, 1.0]
    assert [t.model for t in config.models[0].targets] == ["gpt-4o", "claude-sonnet-4-5"]
    assert conversion.notes == [
        "model_list[0].litellm_params.weight: not mapped: only simple-shuffle uses weights",
        "model_list[1].litellm_params.weight: not mapped: only simple-shuffle uses weights",
    ]


def test_import_cache_without_params_reads_redis_from_the_environment() -> None:
    conversion = convert_litellm("""
model_list:
  - {model_name: gpt-4o, litellm_params: {model: openai/gpt-4o}}
litellm_settings: {cache: true}
""")
    config = checked(conversion)

    assert conversion.config["state"]["redis_url"] == (
        "redis://:${REDIS_PASSWORD:-}@${REDIS_HOST}:${REDIS_PORT:-6379}/0"
    )
    assert config.state.redis_url == "redis://:@127.0.0.1:6379/0"
    assert config.cache is not None
    assert config.cache.scope == "global"
    assert conversion.notes == []


def test_import_semantic_and_unsupported_caches() -> None:
    semantic = convert_litellm("""
model_list: [{model_name: m, litellm_params: {model: openai/gpt-4o}}]
litellm_settings:
  cache: true
  cache_params: {type: qdrant-semantic, similarity_threshold: 0.8, qdrant_collection_name: c}
""")
    s3 = convert_litellm("""
model_list: [{model_name: m, litellm_params: {model: openai/gpt-4o}}]
litellm_settings: {cache: true, cache_params: {type: s3, s3_bucket_name: answers}}
""")

    semantic_cache = checked(semantic).cache
    assert semantic_cache is not None
    assert semantic_cache.semantic.enabled
    assert semantic_cache.semantic.threshold == 0.85
    assert has_note(semantic.notes, "litellm_settings.cache_params.similarity_threshold")
    assert has_note(semantic.notes, "litellm_settings.cache_params.qdrant_collection_name")
    s3_config = checked(s3)
    assert s3_config.cache is not None
    assert s3_config.state.backend == "memory"
    assert has_note(s3.notes, "litellm_settings.cache_params.type", "'s3'")
    assert has_note(s3.notes, "litellm_settings.cache_params.s3_bucket_name")


def test_import_reports_every_setting_it_leaves_behind() -> None:
    conversion = convert_litellm("""
model_list:
  - model_name: chat
    litellm_params: {model: openai/gpt-4o, api_key: sk-a, stream_timeout: 30, api_version: v1}
    model_info: {mode: chat}
    tpm_limit: 10
  - {model_name: "*", litellm_params: {model: "*"}}
  - {model_name: broken}
  - {model_name: mystery, litellm_params: {model: some-model}}
router_settings: {retry_policy: {}, num_retries: -1, timeout: 9000, allowed_fails: x}
litellm_settings: {max_budget: 10, default_fallbacks: [chat], allowed_fails: 2, cooldown_time: 0}
general_settings: {master_key: sk-master, database_connection_pool_limit: 10}
environment_variables: {OPENAI_API_KEY: sk-a}
mcp_servers: {}
""")
    config = checked(conversion)

    assert config.resilience.circuit_breaker.failure_threshold == 3  # litellm_settings' value
    for path in (
        "model_list[0].litellm_params.stream_timeout",
        "model_list[0].litellm_params.api_version",
        "model_list[0].model_info",
        "model_list[0].tpm_limit",
        "model_list[1]",
        "model_list[2]",
        "model_list[3].litellm_params.model",
        "router_settings.retry_policy",
        "router_settings.num_retries",
        "router_settings.timeout",
        "router_settings.allowed_fails",
        "litellm_settings.max_budget",
        "litellm_settings.cooldown_time",
        "litellm_settings.default_fallbacks",
        "general_settings.database_connection_pool_limit",
        "environment_variables.OPENAI_API_KEY",
        "mcp_servers",
    ):
        assert has_note(conversion.notes, path), path
    assert len(conversion.notes) == 17
    assert all("\n" not in note for note in conversion.notes)


def test_import_output_is_deterministic() -> None:
    first = render(convert_file(FIXTURES / "load_balanced.yaml"), source="load_balanced.yaml")
    second = render(convert_file(FIXTURES / "load_balanced.yaml"), source="load_balanced.yaml")

    assert first == second
    assert first.startswith("# stellara.yaml\n# converted from load_balanced.yaml by")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_list: [a, b", "invalid YAML"),
        ("- just\n- a list\n", "not a LiteLLM config"),
        ("model_list: {gpt: {}}", "model_list must be a list"),
    ],
)
def test_import_refuses_what_is_not_a_litellm_config(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        convert_litellm(text, source="bad.yaml")

    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("bad.yaml")
    assert message in caught.value.problems[0]


def test_cli_import_litellm_prints_config_and_notes(tmp_path: Path) -> None:
    source = FIXTURES / "redis_cache.yaml"
    result = subprocess.run(
        [*STELLARA, "config", "import-litellm", str(source)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["cache"]["scope"] == "global"
    assert result.stderr.splitlines() == convert_file(source).notes
    converted = tmp_path / "stellara.yaml"
    converted.write_text(result.stdout, encoding="utf-8")
    checking = subprocess.run(
        [*STELLARA, "config", "check", str(converted)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", **environ_for(result.stdout)},
    )
    assert checking.returncode == 0, checking.stderr
    assert "gpt-4o-mini: openai (openai) → gpt-4o-mini" in checking.stdout


@pytest.mark.parametrize("content", [None, "model_list: [\n"])
def test_cli_import_litellm_fails_in_one_line(tmp_path: Path, content: str | None) -> None:
    source = tmp_path / "config.yaml"
    if content is not None:
        source.write_text(content, encoding="utf-8")
    result = subprocess.run(
        [*STELLARA, "config", "import-litellm", str(source)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(str(source))
    assert "Traceback" not in result.stderr


def test_migration_page_example_is_what_the_command_prints() -> None:
    page = (Path(__file__).parents[2] / "docs" / "migration.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(\w+)\n(.*?)\n```", page, flags=re.DOTALL)
    source = next(body for lang, body in blocks if body.startswith("# LiteLLM config.yaml"))
    output = next(body for lang, body in blocks if body.startswith("# stellara.yaml"))
    notes = next(body for lang, body in blocks if lang == "text" and "not mapped" in body)
    conversion = convert_litellm(source)

    assert render(conversion, source="config.yaml") == output + "\n"
    assert conversion.notes == notes.splitlines()
    checked(conversion)


def test_import_context_window_fallbacks_join_the_model_fallbacks() -> None:
    conversion = convert_litellm("""
model_list:
  - {model_name: small, litellm_params: {model: openai/gpt-4o-mini}}
  - {model_name: large, litellm_params: {model: openai/gpt-4o}}
litellm_settings: {context_window_fallbacks: [{small: [large]}]}
""")
    config = checked(conversion)

    assert config.models[0].fallbacks == ["large"]
    assert has_note(
        conversion.notes, "litellm_settings.context_window_fallbacks[0].small", "any failure"
    )
