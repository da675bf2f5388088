"""`stellara serve --demo`: a working gateway with no config and no keys.

It starts the provider simulator in-process on a free port and serves a config with one
provider of every registered type pointed at it, so each wire format can be tried from either
inbound API: `demo` goes to the first type, `demo-<type>` to each one.
"""

from __future__ import annotations

import secrets
from typing import Any

from stellara.assembly.config import check_config
from stellara.config.models import StellaraConfig
from stellara.providers import provider_types


def new_demo_key() -> str:
    return "sk-stellara-demo-" + secrets.token_hex(12)


def new_admin_key() -> str:
    """The demo's master key: it opens the dashboard and the admin API."""
    return "sk-stellara-admin-" + secrets.token_hex(12)


def demo_models() -> list[str]:
    """The public model names the demo serves, in the order the banner lists them."""
    return ["demo", *(f"demo-{kind}" for kind in provider_types())]


def demo_config(
    sim_url: str, demo_key: str, *, host: str, port: int, admin_key: str
) -> StellaraConfig:
    """A config with one simulator-backed provider and public model per provider type, and
    two feedback metrics to rate answers with (and run experiments on)."""
    providers: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    for kind, provider_type in provider_types().items():
        providers.append({"id": f"sim-{kind}", **provider_type.sim_entry(sim_url)})
        target = {"provider": f"sim-{kind}", "model": provider_type.sim_model}
        if not models:
            models.append({"name": "demo", "targets": [target]})
        models.append({"name": f"demo-{kind}", "targets": [target]})
    return check_config(
        {
            "server": {"host": host, "port": port, "master_key": admin_key},
            "providers": providers,
            "models": models,
            "keys": [{"key": demo_key, "user": "demo"}],
            "feedback": {
                "metrics": {
                    "thumbs_up": {"type": "boolean"},
                    "rating": {"type": "number", "min": 1, "max": 5},
                }
            },
        }
    )


def demo_banner(url: str, demo_key: str, admin_key: str) -> str:
    """What `--demo` prints: where it listens, the keys, and lines to paste."""
    body = '{"model":"demo","messages":[{"role":"user","content":"Hello, Stellara!"}]}'
    anthropic_body = (
        '{"model":"demo-anthropic","max_tokens":256,'
        '"messages":[{"role":"user","content":"Hello, Stellara!"}]}'
    )
    return (
        f"Stellara demo gateway on {url}  (provider simulators in-process, no keys needed)\n"
        f"Demo key: {demo_key}\n"
        f"Models:   {', '.join(demo_models())}\n\n"
        f"Try it:\n"
        f"  curl -s {url}/v1/chat/completions \\\n"
        f"    -H 'Authorization: Bearer {demo_key}' -H 'Content-Type: application/json' \\\n"
        f"    -d '{body}'\n"
        f"  curl -s {url}/v1/messages \\\n"
        f"    -H 'x-api-key: {demo_key}' -H 'Content-Type: application/json' \\\n"
        f"    -d '{anthropic_body}'\n\n"
        f"Dashboard:      {url}/dashboard?key={admin_key}\n"
        f"Admin key:      {admin_key}  (admin API: /admin/keys, /admin/usage, …)\n"
        f"OpenAI SDK:     OpenAI(base_url='{url}/v1', api_key='{demo_key}')\n"
        f"Anthropic SDK:  Anthropic(base_url='{url}', api_key='{demo_key}')\n"
    )
