"""`stellara serve --demo`: a working gateway with no config and no keys.

It starts the provider simulator in-process on a free port and serves a config whose public
models all point at it, with a freshly made demo key.
"""

from __future__ import annotations

import secrets

from stellara.config.loader import parse_config
from stellara.config.models import StellaraConfig

DEMO_MODELS = ("demo", "gpt-4o-mini", "gpt-4o")


def new_demo_key() -> str:
    return "sk-stellara-demo-" + secrets.token_hex(12)


def demo_config(sim_url: str, demo_key: str, *, host: str, port: int) -> StellaraConfig:
    """A config routing every demo model to the simulator at `sim_url`."""
    models = "\n".join(
        f"  - {{name: {name}, targets: [{{provider: sim, model: {target}}}]}}"
        for name, target in zip(DEMO_MODELS, ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o"), strict=True)
    )
    text = f"""
server: {{host: "{host}", port: {port}}}
providers:
  - {{id: sim, type: openai, base_url: "{sim_url}/v1", api_key: sim-demo-upstream-key}}
models:
{models}
keys:
  - {{key: "{demo_key}", user: demo}}
"""
    return parse_config(text, source="<demo>")


def demo_banner(url: str, demo_key: str) -> str:
    """What `--demo` prints: where it listens, the key, and a line to paste."""
    body = '{"model":"demo","messages":[{"role":"user","content":"Hello, Stellara!"}]}'
    return (
        f"Stellara demo gateway on {url}  (provider simulator in-process, no keys needed)\n"
        f"Demo key: {demo_key}\n"
        f"Models:   {', '.join(DEMO_MODELS)}\n\n"
        f"Try it:\n"
        f"  curl -s {url}/v1/chat/completions \\\n"
        f"    -H 'Authorization: Bearer {demo_key}' -H 'Content-Type: application/json' \\\n"
        f"    -d '{body}'\n\n"
        f"OpenAI SDK:  OpenAI(base_url='{url}/v1', api_key='{demo_key}')\n"
    )
