"""`deploy/compose.yaml` is a valid Compose file whose parts fit together: two gateway replicas
behind the proxy, both scraped by Prometheus, running a config that passes `stellara config
check` with the values `.env.example` gives.

Nothing here needs Docker. The file is interpolated the way Compose does it (with
`deploy/.env.example` standing in for `deploy/.env`) and validated against the Compose
Specification's JSON schema, vendored in `compose_spec/` (see its SOURCE.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import orjson
import pytest
import yaml

from stellara.assembly.config import parse_config
from stellara.config.models import StellaraConfig

DEPLOY = Path(__file__).parents[2] / "deploy"
SCHEMA = Path(__file__).parent / "compose_spec" / "compose-spec.json"
GATEWAY_IMAGE = "stellara:local"
# Compose's interpolation: `$$` is a literal `$`; `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
# `${VAR:?message}`, `${VAR?message}` and `$VAR`.
_REFERENCE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)


class InterpolationError(Exception):
    """A variable Compose would refuse, or that `.env.example` forgot."""


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines, as Compose reads a `.env` file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """`value` (parsed YAML) with every string interpolated from `env`. A variable that is
    unset (and has no default) is an error here, where Compose would only warn: every variable
    the file uses must be in `.env.example`."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, str):
        return _REFERENCE.sub(lambda match: _substitute(match, env), value)
    return value


def _substitute(match: re.Match[str], env: Mapping[str, str]) -> str:
    if match.group(0) == "$$":
        return "$"
    name = match.group("name") or match.group("bare")
    op, arg = match.group("op"), match.group("arg")
    is_set = name in env and (env[name] != "" or op in ("-", "?"))
    if is_set:
        return env[name]
    if op in (":-", "-"):
        return str(arg)
    raise InterpolationError(f"${{{name}}} is not set: {arg or 'no default'}")


@cache
def env_example() -> dict[str, str]:
    return read_env_file(DEPLOY / ".env.example")


@cache
def compose_file() -> dict[str, Any]:
    """`deploy/compose.yaml` parsed (YAML merge keys resolved) and interpolated."""
    raw = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return dict(interpolate(raw, env_example()))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose_file()["services"])


def replicas() -> dict[str, dict[str, Any]]:
    """The services that run the gateway (not the simulator, which runs the same image)."""
    return {
        name: service
        for name, service in services().items()
        if service.get("image") == GATEWAY_IMAGE and service["command"][0] == "serve"
    }


def mounts(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The service's volumes by their path in the container (the file uses the long syntax)."""
    return {mount["target"]: mount for mount in service.get("volumes", [])}


def config_path_in_container(service: Mapping[str, Any]) -> str:
    command: list[str] = service["command"]
    return command[command.index("--config") + 1]


def gateway_config(service: Mapping[str, Any]) -> StellaraConfig:
    """The config the replica runs, checked as `stellara config check` checks it, with the
    environment the replica gets."""
    source = mounts(service)[config_path_in_container(service)]["source"]
    text = (DEPLOY / source).read_text()
    return parse_config(text, source=source, environ=service["environment"])


def compose_schema_problems(document: Any) -> list[str]:
    validator = jsonschema_rs.validator_for(orjson.loads(SCHEMA.read_bytes()))
    return [f"{error.instance_path}: {error.message}" for error in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification() -> None:
    assert compose_schema_problems(compose_file()) == []


def test_compose_schema_check_rejects_what_compose_would() -> None:
    depends = {"redis": {"condition": "service_ready"}}
    broken = {"services": {"gateway": {"image": GATEWAY_IMAGE, "depends_on": depends}}}
    unknown = {"services": {"gateway": {"image": GATEWAY_IMAGE, "replica": 2}}}

    assert compose_schema_problems(broken)
    assert compose_schema_problems(unknown)


def test_compose_interpolation_refuses_a_variable_env_example_lacks() -> None:
    with pytest.raises(InterpolationError, match="NOT_IN_ENV"):
        interpolate({"key": "${NOT_IN_ENV:?set it}"}, env_example())
    assert interpolate(["$${A}", "${PORT:-4000}"], {}) == ["${A}", "4000"]


def test_compose_runs_two_replicas_built_from_the_repository_dockerfile() -> None:
    gateways = replicas()

    assert len(gateways) == 2
    for service in gateways.values():
        assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert (DEPLOY / service["build"]["context"] / "pyproject.toml").is_file()


def test_compose_replicas_mount_the_config_read_only() -> None:
    for name, service in replicas().items():
        mount = mounts(service)[config_path_in_container(service)]
        assert mount["type"] == "bind", name
        assert mount["read_only"] is True, name
        assert service["read_only"] is True


def test_compose_bind_mounts_name_files_in_the_repository() -> None:
    for name, service in services().items():
        for mount in mounts(service).values():
            if mount["type"] == "bind":
                assert (DEPLOY / mount["source"]).exists(), f"{name}: {mount['source']}"


def test_compose_every_service_has_a_healthcheck_and_a_restart_policy() -> None:
    for name, service in services().items():
        check = service.get("healthcheck", {})
        assert check.get("test"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service.get("restart") == "unless-stopped", name


def test_compose_dependencies_wait_on_conditions() -> None:
    all_services = services()
    for name, service in all_services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in all_services, f"{name} → {dependency}"
            assert rule["condition"] in ("service_healthy", "service_started"), name
    for service in replicas().values():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    proxy_waits_on = all_services["proxy"]["depends_on"]
    assert {name: rule["condition"] for name, rule in proxy_waits_on.items()} == dict.fromkeys(
        replicas(), "service_healthy"
    )


def test_compose_replica_config_passes_config_check() -> None:
    for name, service in replicas().items():
        config = gateway_config(service)

        assert config.state.backend == "redis", name
        assert config.telemetry.metrics, name
        assert config.server.host == "0.0.0.0", name
        assert urlsplit(config.usage_store.url).scheme == "postgresql", name
        # While Redis is down each replica enforces its share: together, the configured limits.
        assert config.state.fallback_share == pytest.approx(1 / len(replicas())), name


def test_compose_replica_config_reaches_the_other_services() -> None:
    all_services = services()
    redis_password = all_services["redis"]["environment"]["REDIS_PASSWORD"]
    postgres = all_services["postgres"]["environment"]
    for service in replicas().values():
        config = gateway_config(service)
        redis = urlsplit(config.state.redis_url or "")
        database = urlsplit(config.usage_store.url)
        simulator = urlsplit(str(config.providers[0].base_url))

        assert (redis.hostname, redis.password) == ("redis", redis_password)
        assert database.hostname == "postgres"
        assert (database.username, database.password) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
        )
        assert database.path == "/" + postgres["POSTGRES_DB"]
        assert simulator.hostname in all_services
        assert str(simulator.port) in all_services[simulator.hostname]["command"]


def test_compose_health_checks_probe_the_port_the_gateway_listens_on() -> None:
    for service in replicas().values():
        port = gateway_config(service).server.port
        probe = " ".join(service["healthcheck"]["test"])

        assert f"http://127.0.0.1:{port}/readyz" in probe
        assert "ports" not in service  # reached through the proxy only


def test_compose_proxy_spreads_requests_over_both_replicas() -> None:
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    upstream = re.search(r"upstream stellara \{(.*?)\}", nginx, re.DOTALL)
    assert upstream is not None
    servers = set(re.findall(r"^\s*server (\S+)", upstream.group(1), re.MULTILINE))
    expected = {
        f"{name}:{gateway_config(service).server.port}" for name, service in replicas().items()
    }

    assert servers == expected
    assert "proxy_pass http://stellara;" in nginx
    assert "proxy_buffering off;" in nginx  # streams arrive as they are made
    listen = re.search(r"listen (\d+);", nginx)
    assert listen is not None
    (published,) = services()["proxy"]["ports"]
    assert published.endswith(f":{listen.group(1)}")


def test_compose_prometheus_scrapes_both_replicas() -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "stellara"]
    targets = {target for group in job["static_configs"] for target in group["targets"]}
    expected = {
        f"{name}:{gateway_config(service).server.port}" for name, service in replicas().items()
    }

    assert targets == expected
    assert job["metrics_path"] == "/metrics"
    assert job.get("scheme", "http") == "http"
    mounted = mounts(services()["prometheus"])["/etc/prometheus/prometheus.yml"]
    assert mounted["source"] == "./prometheus/prometheus.yml"


def test_compose_grafana_provisions_the_prometheus_datasource_and_dashboards() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "stellara.yaml").read_text())[
        "providers"
    ]
    grafana = services()["grafana"]
    sources = {target: mount["source"] for target, mount in mounts(grafana).items()}

    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert sources["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert sources[provider["options"]["path"]] == "./grafana/dashboards"
    assert (DEPLOY / "grafana" / "dashboards" / "stellara.json").is_file()
