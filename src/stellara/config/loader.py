"""Read, interpolate and check a config file, reporting every problem at once.

Each problem is one line that starts with its path in the file, e.g.
`models[0].targets[1].provider: unknown provider 'opena'`, so an operator can fix them all in
one pass. Checks that span sections (a target naming an unknown provider, duplicate names)
run after the shape is valid.

Provider entries are checked with the settings model of their `type`, which the caller passes
in (`provider_settings`): the provider registry sits a layer above config, so
`stellara.assembly.config` hands it over, and its `load_config` is what callers use.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stellara.config.experiments import experiment_problems
from stellara.config.models import ProviderSettings, StellaraConfig
from stellara.errors import ConfigError

ProviderSettingsModels = Mapping[str, type[ProviderSettings]]
"""The settings model of each provider `type` (the provider registry's)."""

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# `${VAR}` is not a valid plain YAML scalar inside a flow mapping (`{api_key: ${KEY}}`), so each
# reference becomes a placeholder before parsing, and the value goes in after: substituting the
# text first would also let a value's `:` or `#` change the document's structure.
# The placeholder carries a per-parse nonce, so text that merely looks like one stays text.


def read_config_text(path: str | Path) -> str:
    """The text of the config file at `path`; raise `ConfigError` if it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc


def parse_yaml(
    text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The YAML mapping of `text` with every `${VAR}` put in, and the problems found so far
    (unset variables) for `validate_config` to report with its own; raise `ConfigError` if
    `text` is not a YAML mapping."""
    references: list[tuple[str, str | None]] = []
    nonce = secrets.token_hex(6)

    def to_placeholder(match: re.Match[str]) -> str:
        references.append((match.group(1), match.group(2)))
        return f"__stellara_env_{nonce}_{len(references) - 1}__"

    try:
        raw = yaml.safe_load(_ENV_REF.sub(to_placeholder, text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of sections"])
    problems: list[str] = []
    env = os.environ if environ is None else environ
    placeholder = re.compile(rf"__stellara_env_{nonce}_(\d+)__")
    raw = _interpolate(raw, "", _Interpolation(placeholder, references, env, problems))
    return raw, problems


def validate_config(
    raw: dict[str, Any],
    provider_settings: ProviderSettingsModels,
    *,
    problems: list[str] | None = None,
) -> StellaraConfig:
    """Validate an already-parsed, interpolated config mapping; raise `ConfigError` listing
    every problem (plus any in `problems` already found)."""
    problems = [] if problems is None else problems
    raw = dict(raw)
    problems.extend(_cross_check(raw))
    raw["providers"] = _validate_providers(raw.get("providers", []), provider_settings, problems)
    config: StellaraConfig | None = None
    try:
        config = StellaraConfig.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_describe(exc, prefix=""))
    if config is not None:
        problems.extend(_experiment_problems(config))
    if problems or config is None:
        raise ConfigError(problems)
    return config


class _Interpolation:
    def __init__(
        self,
        placeholder: re.Pattern[str],
        references: list[tuple[str, str | None]],
        environ: Mapping[str, str],
        problems: list[str],
    ) -> None:
        self.placeholder = placeholder
        self.references = references
        self.environ = environ
        self.problems = problems


def _interpolate(value: Any, path: str, job: _Interpolation) -> Any:
    """Put the value of each `${VAR}` / `${VAR:-default}`; an unset VAR is a problem."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = job.references[int(match.group(1))]
            if name in job.environ:
                return job.environ[name]
            if default is not None:
                return default
            job.problems.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return job.placeholder.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, _join(path, k), job) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", job) for i, v in enumerate(value)]
    return value


def _validate_providers(entries: Any, known: ProviderSettingsModels, problems: list[str]) -> Any:
    """Validate each provider entry with the settings model its `type` registers."""
    if not isinstance(entries, list):
        return entries  # the whole-config validation reports the wrong type
    settings: list[ProviderSettings] = []
    for index, entry in enumerate(entries):
        path = f"providers[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{path}: expected a mapping")
            continue
        kind = entry.get("type")
        if not isinstance(kind, str) or kind not in known:
            names = ", ".join(sorted(known))
            what = "missing" if kind is None else f"unknown provider type {kind!r}"
            problems.append(f"{path}.type: {what} (known: {names})")
            continue
        try:
            settings.append(known[kind].model_validate(entry))
        except ValidationError as exc:
            problems.extend(_describe(exc, prefix=path))
    return settings


def _cross_check(raw: dict[str, Any]) -> list[str]:
    """Checks spanning sections, run on the raw mapping so they report even when some entries
    are malformed (those entries are skipped here; validation reports them)."""
    problems: list[str] = []
    provider_ids: set[str] = set()
    for i, provider in _entries(raw, "providers"):
        pid = provider.get("id") if isinstance(provider, dict) else None
        if pid in provider_ids:
            problems.append(f"providers[{i}].id: duplicate provider id {pid!r}")
        if isinstance(pid, str):
            provider_ids.add(pid)
    model_names: set[str] = set()
    for i, model in _entries(raw, "models"):
        name = model.get("name") if isinstance(model, dict) else None
        if name in model_names:
            problems.append(f"models[{i}].name: duplicate model name {name!r}")
        if isinstance(name, str):
            model_names.add(name)
        targets = model.get("targets") if isinstance(model, dict) else None
        for j, target in enumerate(targets if isinstance(targets, list) else []):
            provider = target.get("provider") if isinstance(target, dict) else None
            if isinstance(provider, str) and provider not in provider_ids:
                problems.append(f"models[{i}].targets[{j}].provider: unknown provider {provider!r}")
    problems.extend(_fallback_problems(raw, model_names))
    seen_keys: set[str] = set()
    for i, key in _entries(raw, "keys"):
        if not isinstance(key, dict):
            continue
        secret = key.get("key")
        if isinstance(secret, str) and secret in seen_keys:
            problems.append(f"keys[{i}].key: duplicate key")
        if isinstance(secret, str):
            seen_keys.add(secret)
        allowed = key.get("models")
        problems.extend(
            f"keys[{i}].models: unknown model {name!r}"
            for name in (allowed if isinstance(allowed, list) else [])
            if name not in model_names
        )
    problems.extend(_check_state(raw.get("state")))
    problems.extend(_check_tiers(raw))
    return problems


def _experiment_problems(config: StellaraConfig) -> list[str]:
    """Experiments naming what the config lacks; two on one model, which a request could
    not be in both of; a duplicate id."""
    models = {m.name for m in config.models}
    providers = {p.id for p in config.providers}
    problems: list[str] = [
        f"models[{i}].cost_floor.metric: no feedback metric is named {floor.metric!r}"
        for i, model in enumerate(config.models)
        if (floor := model.cost_floor) is not None
        and floor.metric is not None
        and floor.metric not in config.feedback.metrics
    ]
    ids: set[str] = set()
    live_on: set[str] = set()
    for i, experiment in enumerate(config.experiments):
        path = f"experiments[{i}]"
        if experiment.id in ids:
            problems.append(f"{path}.id: duplicate experiment id {experiment.id!r}")
        ids.add(experiment.id)
        if experiment.status != "stopped":
            if experiment.model in live_on:
                problems.append(
                    f"{path}.model: another experiment on {experiment.model!r} is not stopped"
                )
            live_on.add(experiment.model)
        problems.extend(
            experiment_problems(
                experiment,
                models=models,
                providers=providers,
                metrics=config.feedback.metrics,
                path=path,
            )
        )
    return problems


def _check_state(state: Any) -> list[str]:
    if not isinstance(state, dict) or state.get("backend") != "redis":
        return []
    if state.get("redis_url"):
        return []
    return ["state.redis_url: required when state.backend is redis"]


# Users in this tier are unlimited when it is not defined, so naming it is never an error.
_IMPLICIT_TIER = "default"


def _check_tiers(raw: dict[str, Any]) -> list[str]:
    """Every tier named (users, keys, default_tier) must be defined under `limits.tiers`."""
    limits = raw.get("limits")
    limits = limits if isinstance(limits, dict) else {}
    tiers = limits.get("tiers")
    known = set(tiers) if isinstance(tiers, dict) else set()
    named: list[tuple[str, Any]] = [("limits.default_tier", limits.get("default_tier"))]
    users = limits.get("users")
    for user, entry in users.items() if isinstance(users, dict) else []:
        if isinstance(entry, dict):
            named.append((f"limits.users.{user}.tier", entry.get("tier")))
    for i, key in _entries(raw, "keys"):
        if isinstance(key, dict):
            named.append((f"keys[{i}].tier", key.get("tier")))
    names = ", ".join(sorted(known)) or "none defined"
    return [
        f"{path}: unknown tier {tier!r} (tiers: {names})"
        for path, tier in named
        if isinstance(tier, str) and tier != _IMPLICIT_TIER and tier not in known
    ]


def _fallback_problems(raw: dict[str, Any], model_names: set[str]) -> list[str]:
    """Fallbacks name public models, and never lead back to where they started."""
    problems: list[str] = []
    graph: dict[str, list[str]] = {}
    for i, model in _entries(raw, "models"):
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            continue
        fallbacks = model.get("fallbacks")
        names = [f for f in fallbacks if isinstance(f, str)] if isinstance(fallbacks, list) else []
        graph[model["name"]] = names
        problems.extend(
            f"models[{i}].fallbacks: unknown model {name!r}"
            for name in names
            if name not in model_names
        )
    for i, model in _entries(raw, "models"):
        name = model.get("name") if isinstance(model, dict) else None
        if isinstance(name, str) and _reaches(graph, name, name, set()):
            problems.append(f"models[{i}].fallbacks: fallback cycle back to {name!r}")
    return problems


def _reaches(graph: dict[str, list[str]], start: str, goal: str, seen: set[str]) -> bool:
    for nxt in graph.get(start, []):
        if nxt == goal:
            return True
        if nxt not in seen:
            seen.add(nxt)
            if _reaches(graph, nxt, goal, seen):
                return True
    return False


def _entries(raw: dict[str, Any], section: str) -> list[tuple[int, Any]]:
    value = raw.get(section)
    return list(enumerate(value)) if isinstance(value, list) else []


def _describe(exc: ValidationError, *, prefix: str) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        path = prefix
        for part in error["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
        message = {
            "extra_forbidden": "unknown key",
            "missing": "required key is missing",
        }.get(error["type"], error["msg"])
        lines.append(f"{path or '<root>'}: {message}")
    return lines


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)
