"""Whether this installation can run every feature a config turns on.

A feature whose code or data is missing must stop start-up (and `stellara config check`) with a
line naming what to install, never fail each request with a 500. The semantic cache's model
ships inside Stellara, so it is missing only from a broken install; tracing needs the
`tracing` extra, and its OTLP exporter a package of its own.

Modules are looked up, not imported: importing OpenTelemetry costs every gateway that checks.
"""

from __future__ import annotations

import importlib.util

from stellara.cache.embedder import missing_model_files
from stellara.config.models import StellaraConfig
from stellara.errors import ConfigError

__all__ = ["check_environment", "environment_problems"]

_OPENTELEMETRY_SDK = "opentelemetry.sdk"
_OTLP_EXPORTER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def check_environment(config: StellaraConfig) -> None:
    """Raise `ConfigError` with one line per feature of `config` that cannot run here."""
    problems = environment_problems(config)
    if problems:
        raise ConfigError(problems)


def environment_problems(config: StellaraConfig) -> list[str]:
    """One line per feature `config` turns on whose code or data this installation lacks."""
    problems: list[str] = []
    cache = config.cache
    if cache is not None and cache.semantic.enabled:
        problems.extend(
            f"cache.semantic.enabled: the embedding model's file {path} is missing; "
            "reinstall Stellara (`pip install --force-reinstall stellara`)"
            for path in missing_model_files()
        )
    tracing = config.telemetry.tracing
    if tracing.enabled and not _is_installed(_OPENTELEMETRY_SDK):
        problems.append(
            "telemetry.tracing.enabled: tracing needs OpenTelemetry; install it with "
            "`pip install 'stellara[tracing]'`"
        )
    elif tracing.enabled and tracing.exporter == "otlp" and not _is_installed(_OTLP_EXPORTER):
        problems.append(
            "telemetry.tracing.exporter: otlp needs the OTLP exporter; install it with "
            "`pip install opentelemetry-exporter-otlp-proto-http`"
        )
    return problems


def _is_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False
