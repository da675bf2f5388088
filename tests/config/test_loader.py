import textwrap

import pytest
from pydantic import SecretStr

from stellara.assembly.config import load_config, parse_config
from stellara.config.models import StellaraConfig
from stellara.errors import ConfigError
from stellara.providers.openai import OpenAISettings

VALID = """
server: {host: 0.0.0.0, port: 8080, master_key: master-secret-1}
providers:
  - {id: openai, type: openai, api_key: sk-upstream-1}
  - id: local
    type: openai
    base_url: http://127.0.0.1:8000/v1
    headers: {X-Team: blue}
models:
  - name: smart
    targets:
      - {provider: openai, model: gpt-4o}
      - {provider: local, model: llama}
  - name: cheap
    targets: [{provider: local, model: llama}]
resilience: {timeout_s: 12.5}
keys:
  - {key: app-key-0001, user: alice}
  - {key: app-key-0002, user: bob, models: [cheap]}
"""


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), environ=environ or {})
    return info.value.problems


def test_parse_config_valid_builds_typed_config():
    config = parse_config(VALID, environ={})
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 8080
    assert [p.id for p in config.providers] == ["openai", "local"]
    assert all(type(p) is OpenAISettings for p in config.providers)
    assert config.providers[1].base_url == "http://127.0.0.1:8000/v1"
    assert config.providers[1].headers == {"X-Team": "blue"}
    assert [(t.provider, t.model) for t in config.models[0].targets] == [
        ("openai", "gpt-4o"),
        ("local", "llama"),
    ]
    assert config.resilience.timeout_s == 12.5
    assert config.keys[1].models == ["cheap"]


def test_parse_config_secrets_are_secret_str():
    config = parse_config(VALID, environ={})
    assert config.server.master_key is not None
    assert isinstance(config.server.master_key, SecretStr)
    assert config.server.master_key.get_secret_value() == "master-secret-1"
    api_key = config.providers[0].api_key
    assert isinstance(api_key, SecretStr)
    assert api_key.get_secret_value() == "sk-upstream-1"
    assert isinstance(config.keys[0].key, SecretStr)
    assert "sk-upstream-1" not in repr(config)
    assert "app-key-0001" not in repr(config)


def test_parse_config_empty_file_gives_defaults():
    config = parse_config("", environ={})
    assert config == StellaraConfig()
    assert config.server.port == 4000
    assert config.server.master_key is None
    assert config.providers == []
    assert config.models == []
    assert config.keys == []


def test_parse_config_comment_only_file_gives_defaults():
    assert parse_config("# nothing yet\n", environ={}) == StellaraConfig()


def test_parse_config_top_level_not_mapping_is_reported():
    problems = problems_of("- a\n- b\n")
    assert len(problems) == 1
    assert "top level must be a mapping" in problems[0]


def test_interpolation_env_var_substituted():
    config = parse_config("server: {master_key: ${MK}}\n", environ={"MK": "from-env-123"})
    assert config.server.master_key is not None
    assert config.server.master_key.get_secret_value() == "from-env-123"


def test_interpolation_default_used_when_unset():
    config = parse_config("server: {host: '${HOST:-10.0.0.1}'}\n", environ={})
    assert config.server.host == "10.0.0.1"


def test_interpolation_set_value_wins_over_default():
    config = parse_config("server: {host: ${HOST:-10.0.0.1}}\n", environ={"HOST": "10.9.9.9"})
    assert config.server.host == "10.9.9.9"


def test_interpolation_empty_default_gives_empty_string():
    config = parse_config("server: {host: ${HOST:-}}\n", environ={})
    assert config.server.host == ""


def test_interpolation_inside_flow_mapping():
    text = "providers:\n  - {id: openai, type: openai, api_key: ${KEY}}\n"
    config = parse_config(text, environ={"KEY": "sk-flow-1"})
    api_key = config.providers[0].api_key
    assert api_key is not None
    assert api_key.get_secret_value() == "sk-flow-1"


@pytest.mark.parametrize(
    "value",
    [
        "sk-a: b",
        "sk-#not-a-comment",
        "sk-x}, extra: 1, {",
        "a: b # c\nd: e",
        "'quoted'",
        "- item",
    ],
)
def test_interpolation_value_cannot_change_yaml_structure(value):
    text = "providers:\n  - {id: openai, type: openai, api_key: ${KEY}, base_url: ${URL}}\n"
    config = parse_config(text, environ={"KEY": value, "URL": "http://h:1/v1#frag"})
    provider = config.providers[0]
    assert provider.api_key is not None
    assert provider.api_key.get_secret_value() == value
    assert provider.base_url == "http://h:1/v1#frag"


def test_interpolation_embedded_in_longer_string():
    config = parse_config(
        "providers:\n  - {id: p, type: openai, base_url: 'http://${HOST}:${PORT:-8000}/v1'}\n",
        environ={"HOST": "gpu1"},
    )
    assert config.providers[0].base_url == "http://gpu1:8000/v1"


def test_interpolation_numeric_value_converted_by_field_type():
    config = parse_config("server: {port: ${PORT}}\n", environ={"PORT": "9001"})
    assert config.server.port == 9001


def test_interpolation_in_comment_is_ignored():
    config = parse_config("# master_key: ${NOT_SET}\nserver: {port: 1}\n", environ={})
    assert config.server.port == 1


def test_interpolation_unset_variable_reported_with_path():
    problems = problems_of(
        """
        providers:
          - {id: openai, type: openai, api_key: "${OPENAI_API_KEY}"}
        """
    )
    assert problems == ["providers[0].api_key: environment variable OPENAI_API_KEY is not set"]


def test_interpolation_unset_variable_in_list_reports_index():
    problems = problems_of("keys:\n  - {key: '${APP_KEY}', user: alice}\n")
    assert "keys[0].key: environment variable APP_KEY is not set" in problems


def test_parse_config_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("STELLARA_TEST_PORT", "4321")
    config = parse_config("server: {port: '${STELLARA_TEST_PORT}'}\n")
    assert config.server.port == 4321


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("bogus: 1\n", "bogus"),
        ("server: {bogus: 1}\n", "server.bogus"),
        ("resilience: {retries: 3}\n", "resilience.retries"),
        ("providers:\n  - {id: a, type: openai, extra: 1}\n", "providers[0].extra"),
        (
            "providers: [{id: a, type: openai}]\n"
            "models:\n  - {name: m, targets: [{provider: a, model: x, x: 1}]}\n",
            "models[0].targets[0].x",
        ),
        (
            "providers: [{id: a, type: openai}]\n"
            "models:\n  - {name: m, colour: red, targets: [{provider: a, model: x}]}\n",
            "models[0].colour",
        ),
        ("keys:\n  - {key: abcdefghij, user: u, colour: red}\n", "keys[0].colour"),
    ],
)
def test_check_unknown_key_reported_at_every_level(text, path):
    assert f"{path}: unknown key" in problems_of(text)


def test_check_unknown_provider_type():
    problems = problems_of("providers:\n  - {id: a, type: opena}\n")
    assert len(problems) == 1
    assert problems[0].startswith("providers[0].type: unknown provider type 'opena'")
    assert "openai" in problems[0]


def test_check_missing_provider_type():
    problems = problems_of("providers:\n  - {id: a}\n")
    assert len(problems) == 1
    assert problems[0].startswith("providers[0].type: missing")


def test_check_provider_entry_not_mapping():
    assert "providers[0]: expected a mapping" in problems_of("providers: [openai]\n")


def test_check_target_unknown_provider_exact_line():
    problems = problems_of(
        """
        providers: [{id: openai, type: openai}]
        models:
          - name: smart
            targets:
              - {provider: openai, model: gpt-4o}
              - {provider: opena, model: gpt-4o-mini}
        """
    )
    assert problems == ["models[0].targets[1].provider: unknown provider 'opena'"]


def test_check_duplicate_provider_id():
    problems = problems_of("providers:\n  - {id: a, type: openai}\n  - {id: a, type: openai}\n")
    assert problems == ["providers[1].id: duplicate provider id 'a'"]


def test_check_duplicate_model_name():
    problems = problems_of(
        """
        providers: [{id: a, type: openai}]
        models:
          - {name: m, targets: [{provider: a, model: x}]}
          - {name: m, targets: [{provider: a, model: y}]}
        """
    )
    assert problems == ["models[1].name: duplicate model name 'm'"]


def test_check_duplicate_key():
    problems = problems_of(
        "keys:\n  - {key: same-key-123, user: a}\n  - {key: same-key-123, user: b}\n"
    )
    assert problems == ["keys[1].key: duplicate key"]


def test_check_key_models_names_unknown_model():
    problems = problems_of(
        """
        providers: [{id: a, type: openai}]
        models: [{name: m, targets: [{provider: a, model: x}]}]
        keys:
          - {key: app-key-0001, user: u, models: [m, nope]}
        """
    )
    assert problems == ["keys[0].models: unknown model 'nope'"]


def test_check_key_too_short():
    problems = problems_of("keys:\n  - {key: short, user: u}\n")
    assert len(problems) == 1
    assert problems[0].startswith("keys[0].key: ")
    assert "at least 8 characters" in problems[0]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("server: {port: abc}\n", "server.port"),
        ("server: {port: 70000}\n", "server.port"),
        ("server: {access_log: maybe}\n", "server.access_log"),
        ("resilience: {timeout_s: 0}\n", "resilience.timeout_s"),
        (
            "providers:\n  - {id: a, type: openai, max_connections: many}\n",
            "providers[0].max_connections",
        ),
        ("providers:\n  - {id: 'bad id!', type: openai}\n", "providers[0].id"),
        ("models: {name: m}\n", "models"),
        ("server: [1, 2]\n", "server"),
    ],
)
def test_check_bad_type_reported_with_path(text, path):
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: ")


def test_check_missing_required_key():
    problems = problems_of(
        "providers: [{id: a, type: openai}]\nmodels:\n  - {name: m, targets: [{provider: a}]}\n"
    )
    assert problems == ["models[0].targets[0].model: required key is missing"]


def test_check_empty_targets():
    problems = problems_of("models:\n  - {name: m, targets: []}\n")
    assert len(problems) == 1
    assert problems[0].startswith("models[0].targets: ")


def test_parse_config_yaml_syntax_error_reports_file_line_col():
    text = "server:\n  port: 1\nproviders: [\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="stellara.yaml", environ={})
    (problem,) = info.value.problems
    assert problem.startswith("stellara.yaml:4:1: invalid YAML: ")


def test_parse_config_yaml_error_column_points_at_problem():
    with pytest.raises(ConfigError) as info:
        parse_config("server:\n  port: 1\n\tbad: 2\n", source="c.yaml", environ={})
    (problem,) = info.value.problems
    assert problem.startswith("c.yaml:3:1: invalid YAML: ")


def test_check_reports_every_problem_at_once():
    problems = problems_of(
        """
        server: {port: abc, bogus: 1}
        providers:
          - {id: a, type: openai}
          - {id: a, type: openai}
          - {id: b, type: nope}
        models:
          - {name: m, targets: [{provider: zz, model: x}]}
          - {name: e, targets: []}
        keys:
          - {key: app-key-0001, user: u, models: [ghost]}
        """,
    )
    assert len(problems) == 7
    expected_starts = [
        "server.port: ",
        "server.bogus: unknown key",
        "providers[1].id: duplicate provider id 'a'",
        "providers[2].type: unknown provider type 'nope'",
        "models[0].targets[0].provider: unknown provider 'zz'",
        "models[1].targets: ",
        "keys[0].models: unknown model 'ghost'",
    ]
    for start in expected_starts:
        assert any(p.startswith(start) for p in problems), start


def test_config_error_message_is_one_line_per_problem():
    with pytest.raises(ConfigError) as info:
        parse_config("server: {port: abc, bogus: 1}\n", environ={})
    assert str(info.value).splitlines() == info.value.problems
    assert len(info.value.problems) == 2


def test_check_secrets_never_in_problems():
    secret = "sk-SUPERSECRET-7f3a9c"
    master = "mk-SUPERSECRET-91b2"
    app_key = "ak-SUPERSECRET-55e1"
    text = f"""
    server: {{port: ${{PORT}}, master_key: {master}, colour: blue}}
    providers:
      - {{id: a, type: openai, api_key: {secret}, bogus: 1}}
      - {{id: b, type: openai, api_key: ${{ENV_SECRET}}, max_connections: lots}}
      - {{id: c, type: unknown, api_key: {secret}}}
    models:
      - {{name: m, targets: [{{provider: zz, model: x}}]}}
    keys:
      - {{key: {app_key}, user: u, models: [ghost], extra: 1}}
      - {{key: {app_key}, user: ''}}
    """
    environ = {"ENV_SECRET": "env-SUPERSECRET-abc", "PORT": "port-SUPERSECRET-1"}
    problems = problems_of(text, environ=environ)
    assert len(problems) >= 8
    for problem in problems:
        assert "SUPERSECRET" not in problem


def test_check_secret_not_in_yaml_syntax_error():
    text = "providers:\n  - {id: a, type: openai, api_key: sk-SUPERSECRET-1}}\n"
    (problem,) = problems_of(text)
    assert "invalid YAML" in problem
    assert "SUPERSECRET" not in problem


def test_load_config_reads_file(tmp_path):
    path = tmp_path / "stellara.yaml"
    path.write_text(VALID, encoding="utf-8")
    config = load_config(path, environ={})
    assert [m.name for m in config.models] == ["smart", "cheap"]


def test_load_config_missing_file_is_config_error(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: cannot read")


def test_load_config_yaml_error_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("a: [\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.problems[0].startswith(f"{path}:2:1: invalid YAML")


def test_provider_with_other_errors_is_not_reported_unknown() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "providers: [{id: a, type: openai, bogus: 1}]\n"
            "models: [{name: m, targets: [{provider: a, model: x}]}]\n"
        )
    assert caught.value.problems == ["providers[0].bogus: unknown key"]


def test_text_resembling_placeholder_stays_text() -> None:
    config = parse_config("server: {host: __stellara_env_3__}\n")
    assert config.server.host == "__stellara_env_3__"
