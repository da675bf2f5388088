"""A feature the config turns on but this installation cannot run stops start-up and
`stellara config check` with a line naming what to install, instead of a 500 per request."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellara.assembly import build_runtime
from stellara.assembly.config import check_config
from stellara.assembly.environment import environment_problems
from stellara.cache import embedder
from stellara.cli import main
from stellara.config.models import StellaraConfig
from stellara.errors import ConfigError
from stellara.server.app import create_app
from tests.conftest import gateway_config

TRACING_EXTRA = (
    "telemetry.tracing.enabled: tracing needs OpenTelemetry; install it with "
    "`pip install 'stellara[tracing]'`"
)
OTLP_EXPORTER = (
    "telemetry.tracing.exporter: otlp needs the OTLP exporter; install it with "
    "`pip install opentelemetry-exporter-otlp-proto-http`"
)


def raw_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return gateway_config(
        "http://127.0.0.1:9", usage_store={"url": f"sqlite:///{tmp_path / 'usage.db'}"}, **overrides
    )


def config_of(tmp_path: Path, **overrides: Any) -> StellaraConfig:
    return check_config(raw_config(tmp_path, **overrides))


SEMANTIC = {"cache": {"semantic": {"enabled": True}}}
TRACING = {"telemetry": {"tracing": {"enabled": True}}}
OTLP = {"telemetry": {"tracing": {"enabled": True, "exporter": "otlp"}}}


@pytest.fixture
def no_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the `tracing` extra were not installed (None in sys.modules hides a module)."""
    for module in ("opentelemetry", "opentelemetry.sdk"):
        monkeypatch.setitem(sys.modules, module, None)


@pytest.fixture
def no_otlp_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)


@pytest.fixture
def model_dir_emptied(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """As if Stellara were installed without its model files (a wheel built without them)."""
    empty = tmp_path / "model"
    empty.mkdir()
    monkeypatch.setattr(embedder, "default_model_dir", lambda: empty)
    return empty


def test_environment_runs_the_semantic_cache_of_a_plain_install(tmp_path: Path) -> None:
    assert embedder.missing_model_files() == []
    assert environment_problems(config_of(tmp_path, **SEMANTIC, **TRACING)) == []


def test_environment_names_each_missing_model_file(tmp_path: Path, model_dir_emptied: Path) -> None:
    problems = environment_problems(config_of(tmp_path, **SEMANTIC))
    assert problems == [
        f"cache.semantic.enabled: the embedding model's file {model_dir_emptied / name} is "
        "missing; reinstall Stellara (`pip install --force-reinstall stellara`)"
        for name in ("model.safetensors", "tokenizer.json")
    ]


def test_environment_ignores_the_model_when_the_semantic_cache_is_off(
    tmp_path: Path, model_dir_emptied: Path
) -> None:
    assert environment_problems(config_of(tmp_path, cache={})) == []


@pytest.mark.usefixtures("no_opentelemetry")
def test_environment_names_the_tracing_extra(tmp_path: Path) -> None:
    assert environment_problems(config_of(tmp_path, **OTLP)) == [TRACING_EXTRA]
    assert environment_problems(config_of(tmp_path)) == []


@pytest.mark.usefixtures("no_otlp_exporter")
def test_environment_names_the_otlp_exporter(tmp_path: Path) -> None:
    assert environment_problems(config_of(tmp_path, **OTLP)) == [OTLP_EXPORTER]
    assert environment_problems(config_of(tmp_path, **TRACING)) == []


@pytest.mark.usefixtures("no_opentelemetry", "model_dir_emptied")
def test_startup_refuses_a_config_that_cannot_run_here(tmp_path: Path) -> None:
    config = config_of(tmp_path, **SEMANTIC, **TRACING)
    for build in (build_runtime, create_app):
        with pytest.raises(ConfigError) as refused:
            build(config)
        assert len(refused.value.problems) == 3
        assert refused.value.problems[-1] == TRACING_EXTRA
    assert not (tmp_path / "usage.db").exists()  # refused before anything was built


@pytest.mark.usefixtures("no_otlp_exporter")
@pytest.mark.parametrize("command", [["config", "check"], ["serve", "--config"]])
def test_cli_refuses_a_config_that_cannot_run_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = tmp_path / "stellara.yaml"
    path.write_text(yaml.safe_dump(raw_config(tmp_path, **OTLP)))
    assert main([*command, str(path)]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [OTLP_EXPORTER]
    assert "OK" not in out


def test_cli_config_check_accepts_the_semantic_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "stellara.yaml"
    path.write_text(yaml.safe_dump(raw_config(tmp_path, **SEMANTIC)))
    assert main(["config", "check", str(path)]) == 0
    assert f"{path}: OK" in capsys.readouterr().out
