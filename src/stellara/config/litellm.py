"""Turn a LiteLLM proxy config into a Stellara config (`stellara config import-litellm`).

Use it once, when moving a deployment off LiteLLM: the result keeps LiteLLM's `model_name`s as
public model names, so clients change only their base URL and key. Whatever has no Stellara
equivalent becomes a note (its path in the LiteLLM file and why), never a silent loss. The
translation is pure: text in, a config mapping and notes out; the caller reads and writes files.

This module names LiteLLM's provider prefixes, which is the point of it: it maps vendors
(`gemini/…`) onto Stellara's provider types (`type: google`), and only the CLI imports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

import yaml

from stellara.errors import ConfigError

_PROVIDER_TYPES = {
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "google",
}
# What LiteLLM reads from its environment when a deployment gives no key, base or version.
_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "azure": "AZURE_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "google": "GEMINI_API_KEY",
}
_OPENAI_NAMES = re.compile(r"^(gpt-|chatgpt-|o\d|text-embedding-|davinci|babbage)")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GENERIC = "no Stellara equivalent"
_REASONS = {
    "rpm": "not enforced as a cap: Stellara limits count per user and key (limits:), and a "
    "provider's 429s open its circuit breaker",
    "tpm": "not enforced as a cap: Stellara limits count per user and key (limits:), and a "
    "provider's 429s open its circuit breaker",
    "timeout": "Stellara has one deadline per request, every attempt included "
    "(resilience.timeout_s)",
    "stream_timeout": "Stellara has one deadline per request (resilience.timeout_s)",
    "max_retries": "retries are set for every target at once (resilience.retry.max_attempts)",
    "model_info": "prices and context windows come from Stellara's catalog; add a catalog: "
    "entry to override them",
    "success_callback": "Stellara publishes events to telemetry: sinks (JSON log, webhooks, "
    "Redis) and serves Prometheus metrics at /metrics",
    "failure_callback": "Stellara publishes events to telemetry: sinks and serves /metrics",
    "callbacks": "Stellara publishes events to telemetry: sinks and serves /metrics",
    "set_verbose": "Stellara logs through Python logging; events via telemetry.log_events",
    "json_logs": "Stellara's events are JSON lines already (telemetry.log_events)",
    "database_url": "LiteLLM's keys and spend tables do not carry over; set usage_store.url to "
    "a new database and create keys with POST /admin/keys",
    "model_group_alias": "add the alias as another public model with the same targets",
    "default_fallbacks": "list fallbacks on each model (models[].fallbacks)",
    "content_policy_fallbacks": "a content filter makes Stellara skip to the model's next "
    "target, then its fallbacks (models[].fallbacks)",
    "similarity_threshold": "Stellara's threshold is calibrated for its own embedder; the "
    "default 0.85 is kept",
    "namespace": "Stellara prefixes its own Redis keys",
    "api_version": "only Azure deployments take an API version",
    "input_cost_per_token": "prices come from Stellara's catalog; add a catalog: entry",
    "output_cost_per_token": "prices come from Stellara's catalog; add a catalog: entry",
    "order": "targets are tried by the model's strategy (priority: in the order written)",
}
# Request parameters a LiteLLM deployment may pin; Stellara relays what the client sends.
_REQUEST_PARAMS = {
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "extra_body",
    "extra_headers",
}
_ROUTER_KEYS = {
    "routing_strategy",
    "num_retries",
    "timeout",
    "allowed_fails",
    "cooldown_time",
    "fallbacks",
    "context_window_fallbacks",
    "default_fallbacks",
    "content_policy_fallbacks",
    "redis_host",
    "redis_port",
    "redis_password",
    "redis_url",
}
_SETTINGS_KEYS = {
    "allowed_fails",
    "cooldown_time",
    "cache",
    "cache_params",
    "num_retries",
    "request_timeout",
    "fallbacks",
    "context_window_fallbacks",
    "default_fallbacks",
    "content_policy_fallbacks",
}
_ROUTING = {
    "least-busy": "least_busy",
    "latency-based-routing": "performance",
    "cost-based-routing": "cost",
}
_SHUFFLE = "simple-shuffle"


class Conversion(NamedTuple):
    """A converted config, and one note per LiteLLM setting it could not carry over."""

    config: dict[str, Any]
    notes: list[str]


def convert_file(path: str | Path) -> Conversion:
    """Convert the LiteLLM config at `path`; raise `ConfigError` (one line) if it is unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([f"{path}: cannot read: {reason}"]) from exc
    return convert_litellm(text, source=str(path))


def convert_litellm(text: str, *, source: str = "<litellm config>") -> Conversion:
    """Convert LiteLLM proxy config text; raise `ConfigError` when it is not one at all."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(
            [f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}"]
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: not a LiteLLM config (expected a mapping with model_list)"])
    if not isinstance(raw.get("model_list", []), list):
        raise ConfigError([f"{source}: model_list must be a list of deployments"])
    converter = _Converter()
    converter.convert(raw)
    return Conversion(converter.output(), converter.notes)


def render(conversion: Conversion, *, source: str) -> str:
    """The converted config as YAML text, in a fixed order, so that reruns give the same file."""
    body = yaml.safe_dump(conversion.config, sort_keys=False, allow_unicode=True, width=100)
    header = (
        f"# stellara.yaml\n# converted from {Path(source).name} by stellara config import-litellm\n"
    )
    return header + body


def _value(raw: Any) -> Any:
    """LiteLLM's `os.environ/NAME` becomes Stellara's `${NAME}`; YAML dates become text."""
    if isinstance(raw, str) and raw.startswith("os.environ/"):
        name = raw.removeprefix("os.environ/")
        if _ENV_NAME.match(name):
            return f"${{{name}}}"
    if isinstance(raw, date):
        return raw.isoformat()
    return raw


def _number(raw: Any) -> float | None:
    value = _value(raw)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _mapping(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


class _Converter:
    def __init__(self) -> None:
        self.notes: list[str] = []
        self.providers: dict[str, dict[str, Any]] = {}  # identity → provider entry
        self.models: dict[str, dict[str, Any]] = {}  # public name → model entry
        self.explicit_weights: dict[str, list[str]] = {}  # public name → paths of `weight`
        self.server: dict[str, Any] = {}
        self.resilience: dict[str, Any] = {}
        self.state: dict[str, Any] = {}
        self.cache: dict[str, Any] | None = None

    def note(self, path: str, reason: str) -> None:
        self.notes.append(f"{path}: not mapped: {reason}")

    def partly(self, path: str, what: str) -> None:
        """A setting carried over with a difference the operator should know about."""
        self.notes.append(f"{path}: {what}")

    def convert(self, raw: dict[str, Any]) -> None:
        for index, entry in enumerate(raw.get("model_list") or []):
            self.deployment(f"model_list[{index}]", entry)
        router = _mapping(raw.get("router_settings"))
        settings = _mapping(raw.get("litellm_settings"))
        self.strategies(router)
        self.fallbacks(router, settings)
        self.retries_and_timeout(router, settings)
        self.breaker(router, settings)
        self.caching(settings)
        self.router_redis(router)
        self.general(_mapping(raw.get("general_settings")))
        for section, values, handled in (
            ("router_settings", router, _ROUTER_KEYS),
            ("litellm_settings", settings, _SETTINGS_KEYS),
        ):
            for key in values:
                if key not in handled:
                    self.note(f"{section}.{key}", _REASONS.get(key, _GENERIC))
        for name in _mapping(raw.get("environment_variables")):
            self.note(
                f"environment_variables.{name}",
                "Stellara reads ${VAR} from its own environment: export it before starting",
            )
        known = (
            "model_list",
            "router_settings",
            "litellm_settings",
            "general_settings",
            "environment_variables",
        )
        for key in raw:
            if key not in known:
                self.note(str(key), _REASONS.get(str(key), _GENERIC))

    def output(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.server:
            config["server"] = self.server
        config["providers"] = list(self.providers.values())
        config["models"] = list(self.models.values())
        if self.resilience:
            config["resilience"] = self.resilience
        if self.state:
            config["state"] = self.state
        if self.cache is not None:
            config["cache"] = self.cache
        return config

    def deployment(self, path: str, entry: Any) -> None:
        """One `model_list` entry → a target of its public model (and its provider)."""
        params = _mapping(entry.get("litellm_params")) if isinstance(entry, dict) else {}
        name = entry.get("model_name") if isinstance(entry, dict) else None
        model = params.get("model")
        if not isinstance(name, str) or not name or not isinstance(model, str):
            self.note(path, "a deployment needs model_name and litellm_params.model")
            return
        if "*" in name or "*" in model:
            self.note(path, "wildcard routes have no equivalent: list each public model by name")
            return
        prefix, _, wire_model = model.partition("/") if "/" in model else ("", "", model)
        if not prefix:
            prefix = "anthropic" if model.startswith("claude") else "openai"
            if prefix == "openai" and not _OPENAI_NAMES.match(model):
                self.note(f"{path}.litellm_params.model", "give the provider: e.g. openai/<model>")
                return
        kind = _PROVIDER_TYPES.get(prefix)
        if kind is None:
            self.note(
                f"{path}.litellm_params.model",
                f"provider {prefix!r} has no Stellara type (there are openai, azure, anthropic, "
                "gemini; an OpenAI-compatible server is openai/<model> with api_base)",
            )
            return
        target = self.target(path, kind, wire_model, entry)
        self.models.setdefault(name, {"name": name, "targets": []})["targets"].append(target)
        if "weight" in params:
            self.explicit_weights.setdefault(name, []).append(f"{path}.litellm_params.weight")

    def target(
        self, path: str, kind: str, wire_model: str, entry: dict[str, Any]
    ) -> dict[str, Any]:
        params = entry["litellm_params"]
        settings: dict[str, Any] = {"type": kind}
        api_base = _value(params.get("api_base"))
        if kind == "azure":
            settings["base_url"] = _base_url(kind, api_base or "${AZURE_API_BASE}")
            settings["api_version"] = _value(params.get("api_version")) or "${AZURE_API_VERSION}"
        elif isinstance(api_base, str):
            settings["base_url"] = _base_url(kind, api_base)
        api_key = _value(params.get("api_key"))
        if api_key is None and not (kind == "openai" and api_base):
            api_key = f"${{{_KEY_ENV[kind]}}}"
        if api_key is not None:
            settings["api_key"] = api_key
        if kind == "openai" and params.get("organization"):
            settings["headers"] = {"OpenAI-Organization": _value(params["organization"])}
        provider = self.provider(settings)
        target: dict[str, Any] = {"provider": provider["id"], "model": wire_model}
        base_model = _mapping(entry.get("model_info")).get("base_model")
        if kind == "azure" and isinstance(base_model, str):
            base_model = base_model.removeprefix("azure/")
            deployments = provider.setdefault("deployments", {})
            if deployments.setdefault(base_model, wire_model) == wire_model:
                target["model"] = base_model  # the catalog knows its price under this name
        weight = next(
            (_number(params.get(k)) for k in ("weight", "rpm", "tpm") if k in params), None
        )
        if weight is not None and weight > 0:
            target["weight"] = weight
        self.deployment_notes(path, kind, entry)
        return target

    def deployment_notes(self, path: str, kind: str, entry: dict[str, Any]) -> None:
        mapped = {"model", "api_key", "api_base", "weight"}
        mapped |= {"api_version"} if kind == "azure" else set()
        mapped |= {"organization"} if kind == "openai" else set()
        for key in entry["litellm_params"]:
            if key in mapped:
                continue
            reason = _REASONS.get(key, _GENERIC)
            if key in _REQUEST_PARAMS:
                reason = "Stellara relays the client's request parameters as sent"
            if key in ("rpm", "tpm"):
                self.partly(
                    f"{path}.litellm_params.{key}", f"a weight under simple-shuffle, {reason}"
                )
                continue
            self.note(f"{path}.litellm_params.{key}", reason)
        for key, value in entry.items():
            if key in ("model_name", "litellm_params"):
                continue
            if key == "model_info" and kind == "azure" and isinstance(value, dict):
                for info in value:
                    if info != "base_model":
                        self.note(f"{path}.model_info.{info}", _REASONS["model_info"])
                continue
            self.note(f"{path}.{key}", _REASONS.get(key, _GENERIC))

    def provider(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The provider entry for these connection settings; deployments sharing them share it."""
        identity = json.dumps(settings, sort_keys=True, default=str)
        if identity not in self.providers:
            taken = {p["id"] for p in self.providers.values()}
            base = _provider_name(settings)
            pid = next(
                candidate
                for candidate in (base, *(f"{base}-{n}" for n in range(2, len(taken) + 3)))
                if candidate not in taken
            )
            self.providers[identity] = {"id": pid, **settings}
        return self.providers[identity]

    def strategies(self, router: dict[str, Any]) -> None:
        strategy = router.get("routing_strategy", _SHUFFLE)
        mapped = _ROUTING.get(strategy) if isinstance(strategy, str) else None
        if strategy != _SHUFFLE and mapped is None:
            why = (
                "Stellara keeps no per-deployment TPM/RPM counts"
                if isinstance(strategy, str) and strategy.startswith("usage-based-routing")
                else "unknown strategy"
            )
            self.note(
                "router_settings.routing_strategy",
                f"{why}; models with several targets use round_robin (weighted when weights "
                "are given), as simple-shuffle maps",
            )
        for name, model in self.models.items():
            targets = model["targets"]
            weighted = any("weight" in t for t in targets)
            if len(targets) < 2 or mapped is not None:
                for target in targets:
                    target.pop("weight", None)
                for path in self.explicit_weights.get(name, []) if len(targets) > 1 else []:
                    self.note(path, "only simple-shuffle uses weights")
            if len(targets) > 1:
                model["strategy"] = mapped or ("weighted" if weighted else "round_robin")

    def fallbacks(self, router: dict[str, Any], settings: dict[str, Any]) -> None:
        for section, values in (("router_settings", router), ("litellm_settings", settings)):
            for kind in ("fallbacks", "context_window_fallbacks"):
                if kind in values:
                    self.fallback_list(f"{section}.{kind}", values[kind])
            for kind in ("default_fallbacks", "content_policy_fallbacks"):
                if kind in values:
                    self.note(f"{section}.{kind}", _REASONS[kind])

    def fallback_list(self, path: str, raw: Any) -> None:
        """`[{model: [fallback, …]}, …]`; Stellara has one list per model, for every failure
        (context-window errors included), so both LiteLLM lists feed it."""
        groups = [raw] if isinstance(raw, dict) else raw if isinstance(raw, list) else []
        if not groups:
            self.note(path, "expected a list of {model: [fallbacks]}")
        for index, group in enumerate(groups):
            for name, fallbacks in _mapping(group).items():
                where = f"{path}[{index}].{name}"
                if name not in self.models:
                    self.note(where, f"{name!r} is not a converted model")
                    continue
                listed = self.models[name].setdefault("fallbacks", [])
                before = len(listed)
                for other in fallbacks if isinstance(fallbacks, list) else [fallbacks]:
                    if not isinstance(other, str) or other not in self.models:
                        self.note(where, f"fallback {other!r} is not a converted model")
                    elif other == name or self.reaches(other, name):
                        self.note(where, f"fallback {other!r} would lead back to {name!r}")
                    elif other not in listed:
                        listed.append(other)
                if not listed:
                    del self.models[name]["fallbacks"]
                elif len(listed) > before and path.endswith("context_window_fallbacks"):
                    self.partly(
                        where,
                        f"in models[{name}].fallbacks, which Stellara tries after any failure, "
                        "context-window errors included",
                    )

    def reaches(self, start: str, goal: str) -> bool:
        seen, todo = {start}, [start]
        while todo:
            for nxt in self.models[todo.pop()].get("fallbacks", []):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    def retries_and_timeout(self, router: dict[str, Any], settings: dict[str, Any]) -> None:
        retries = self.first_number(
            [
                ("router_settings.num_retries", router.get("num_retries")),
                ("litellm_settings.num_retries", settings.get("num_retries")),
            ],
            lambda n: n >= 0,
            "a number of retries, 0 or more",
        )
        if retries is not None:
            path, number = retries
            attempts = int(number) + 1
            if attempts > 10:
                self.note(path, f"Stellara allows at most 10 attempts per target, not {attempts}")
            self.resilience["retry"] = {"max_attempts": min(attempts, 10)}
        timeout = self.first_number(
            [
                ("router_settings.timeout", router.get("timeout")),
                ("litellm_settings.request_timeout", settings.get("request_timeout")),
            ],
            lambda t: 0 < t <= 3600,
            "a timeout in (0, 3600] seconds",
        )
        if timeout is not None:
            self.resilience["timeout_s"] = timeout[1]

    def first_number(
        self, candidates: list[tuple[str, Any]], is_valid: Callable[[float], bool], expected: str
    ) -> tuple[str, float] | None:
        """The first valid value of a setting LiteLLM accepts in several places."""
        chosen: tuple[str, float] | None = None
        for path, raw in candidates:
            if raw is None:
                continue
            number = _number(raw)
            if number is None or not is_valid(number):
                self.note(path, f"expected {expected}")
            elif chosen is None:
                chosen = (path, number)
            else:
                self.note(path, f"{chosen[0]} is used instead")
        return chosen

    def breaker(self, router: dict[str, Any], settings: dict[str, Any]) -> None:
        """LiteLLM cools a deployment down after more than `allowed_fails` failures in a
        minute, for `cooldown_time` seconds: a breaker per target."""
        breaker: dict[str, Any] = {}
        allowed = self.first_number(
            [
                ("router_settings.allowed_fails", router.get("allowed_fails")),
                ("litellm_settings.allowed_fails", settings.get("allowed_fails")),
            ],
            lambda n: n >= 0,
            "a number of failures, 0 or more",
        )
        if allowed is not None:
            breaker["failure_threshold"] = int(allowed[1]) + 1
            breaker["window_s"] = 60
        cooldown = self.first_number(
            [
                ("router_settings.cooldown_time", router.get("cooldown_time")),
                ("litellm_settings.cooldown_time", settings.get("cooldown_time")),
            ],
            lambda t: t > 0,
            "a positive number of seconds",
        )
        if cooldown is not None:
            breaker["open_s"] = cooldown[1]
        if breaker:
            self.resilience["circuit_breaker"] = {**breaker, "scope": "target"}

    def caching(self, settings: dict[str, Any]) -> None:
        if not settings.get("cache"):
            if "cache_params" in settings:
                self.note("litellm_settings.cache_params", "litellm_settings.cache is not on")
            return
        params = _mapping(settings.get("cache_params"))
        kind = str(params.get("type", "redis"))  # the proxy's default without a type
        cache: dict[str, Any] = {"scope": "global"}  # LiteLLM shares answers across keys
        ttl = _number(params.get("ttl"))
        if ttl is not None and ttl > 0:
            cache["l1"] = {"ttl_s": ttl}
        used = {"type", "ttl", "host", "port", "password", "url", "redis_url"}
        if kind in ("redis", "redis-semantic"):
            self.state = {"backend": "redis", "redis_url": _redis_url(params)}
            if ttl is not None and ttl > 0:
                cache["l2"] = {"ttl_s": ttl}
        if kind in ("redis-semantic", "qdrant-semantic"):
            cache["semantic"] = {"enabled": True}
        if kind not in ("local", "redis", "redis-semantic", "qdrant-semantic"):
            self.note(
                "litellm_settings.cache_params.type",
                f"{kind!r} caches have no equivalent; answers are cached in memory instead",
            )
        for key in params:
            if key not in used:
                reason = _REASONS.get(key, _GENERIC)
                if kind.endswith("-semantic") and key != "similarity_threshold":
                    reason = "Stellara's semantic cache embeds with its bundled model, in process"
                self.note(f"litellm_settings.cache_params.{key}", reason)
        self.cache = cache

    def router_redis(self, router: dict[str, Any]) -> None:
        """Router Redis shares LiteLLM's cooldowns and usage between instances: Stellara's
        state backend does the same for breakers and limits."""
        params = {k.removeprefix("redis_"): v for k, v in router.items() if k.startswith("redis_")}
        if not params:
            return
        url = _redis_url(params)
        if self.state and self.state["redis_url"] != url:
            self.note("router_settings.redis_host", "Stellara uses one Redis: the cache's is kept")
        self.state = self.state or {"backend": "redis", "redis_url": url}

    def general(self, general: dict[str, Any]) -> None:
        for key, value in general.items():
            if key == "master_key" and value:
                self.server["master_key"] = _value(value)
                # LiteLLM's master key calls models too; clients that use it keep working.
                self.server["master_key_model_calls"] = True
            else:
                self.note(f"general_settings.{key}", _REASONS.get(key, _GENERIC))


def _base_url(kind: str, api_base: str) -> str:
    """LiteLLM's Anthropic `api_base` may be the full messages URL; Stellara wants the root."""
    api_base = api_base.rstrip("/")
    if kind == "anthropic":
        api_base = api_base.removesuffix("/v1/messages").removesuffix("/v1")
    return api_base


def _provider_name(settings: dict[str, Any]) -> str:
    """`azure-myresource` for https://myresource.openai.azure.com; the type alone otherwise."""
    base_url = settings.get("base_url")
    kind = str(settings["type"])
    if not isinstance(base_url, str) or "${" in base_url:
        return kind
    host = urlsplit(base_url).hostname or ""
    if host == "localhost" or re.fullmatch(r"[\d.:]+", host):
        return f"{kind}-local"
    label = re.sub(r"[^A-Za-z0-9_-]", "", host.split(".")[0])[:40]
    if not label or label == "api":
        return kind
    return label if label.startswith(kind) else f"{kind}-{label}"


def _redis_url(params: dict[str, Any]) -> str:
    """A redis:// URL from LiteLLM's `url`, or host/port/password (from the environment
    variables LiteLLM reads when the config gives no host)."""
    url = _value(params.get("url") or params.get("redis_url"))
    if isinstance(url, str):
        return url
    if "host" not in params:
        return "redis://:${REDIS_PASSWORD:-}@${REDIS_HOST}:${REDIS_PORT:-6379}/0"
    host, port = _value(params["host"]), _value(params.get("port", 6379))
    password = _value(params.get("password"))
    if password is None:
        return f"redis://{host}:{port}/0"
    secret = password if str(password).startswith("${") else quote(str(password), safe="")
    return f"redis://:{secret}@{host}:{port}/0"
