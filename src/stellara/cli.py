"""The `stellara` command: serve, simulate, config check (DESIGN §1)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from stellara import __version__
from stellara.config.loader import load_config
from stellara.config.models import StellaraConfig
from stellara.demo import demo_banner, demo_config, new_demo_key
from stellara.errors import ConfigError
from stellara.server.serve import run_loop, serve, serve_workers
from stellara.sim import SimConfig, load_faults, run_simulator, start_simulator


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.run(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stellara", description="A fast AI gateway.")
    parser.add_argument("--version", action="version", version=f"stellara {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, help="YAML config file (see DESIGN §2)")
    serve.add_argument("--host", help="listen address (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: server.port, 4000)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.add_argument("--demo", action="store_true", help="no config or keys: use simulators")
    serve.set_defaults(run=_serve)

    simulate = commands.add_parser("simulate", help="run the provider simulators")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=9100)
    simulate.add_argument("--faults", type=Path, help="YAML/JSON file: {faults: [rules]}")
    simulate.add_argument("--latency-ms", type=float, default=0.0, help="delay before answering")
    simulate.add_argument("--per-token-ms", type=float, default=0.0, help="delay per token")
    simulate.add_argument("--api-key", help="accept only this key (default: any)")
    simulate.set_defaults(run=_simulate)

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(required=True, metavar="ACTION")
    check = config_commands.add_parser("check", help="validate a config and show its routes")
    check.add_argument("file", type=Path)
    check.set_defaults(run=_config_check)
    return parser


def _serve(args: argparse.Namespace) -> int:

    if args.demo:
        if args.workers != 1:
            print("--demo runs a single worker", file=sys.stderr)
            return 2
        port = 4000 if args.port is None else args.port
        run_loop(lambda: _serve_demo(args.host or "127.0.0.1", port))
        return 0
    if args.config is None:
        print("stellara serve needs --config FILE (or --demo)", file=sys.stderr)
        return 2
    config = load_config(args.config)
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    if args.workers > 1:
        serve_workers(args.config, host=host, port=port, workers=args.workers)
        return 0
    run_loop(lambda: serve(config, host=host, port=port, on_ready=_announce(host)))
    return 0


def _announce(host: str) -> Callable[[int], None]:
    def on_ready(port: int) -> None:
        print(f"Stellara listening on http://{host}:{port}", flush=True)

    return on_ready


async def _serve_demo(host: str, port: int) -> None:

    simulator = await start_simulator(SimConfig(per_token_ms=0.0))
    key = new_demo_key()
    config = demo_config(simulator.url, key, host=host, port=port)
    try:
        await serve(
            config,
            host=host,
            port=port,
            on_ready=lambda bound: print(demo_banner(f"http://{host}:{bound}", key), flush=True),
        )
    finally:
        await simulator.close()


def _simulate(args: argparse.Namespace) -> int:

    faults = load_faults(args.faults) if args.faults else []
    config = SimConfig(
        latency_ms=args.latency_ms,
        per_token_ms=args.per_token_ms,
        api_key=args.api_key,
        faults=faults,
    )
    run_simulator(config, args.host, args.port)
    return 0


def _config_check(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(f"{args.file}: OK")
    print(describe_routes(config))
    return 0


def describe_routes(config: StellaraConfig) -> str:
    """One line per public model: its targets in order."""
    providers = {p.id: p.type for p in config.providers}
    lines = [f"{len(config.providers)} provider(s), {len(config.models)} model(s)"]
    for model in config.models:
        targets = ", ".join(
            f"{t.provider} ({providers[t.provider]}) → {t.model}" for t in model.targets
        )
        lines.append(f"  {model.name}: {targets}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
