"""The `stellara` command: serve, simulate, config (check, import-litellm), keys, db."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stellara import __version__
from stellara.assembly.config import load_config
from stellara.assembly.environment import check_environment
from stellara.config.litellm import convert_file, render
from stellara.config.models import StellaraConfig
from stellara.demo import demo_banner, demo_config, new_admin_key, new_demo_key
from stellara.errors import ConfigError, StellaraError
from stellara.server.serve import run_loop, serve, serve_workers
from stellara.sim import SimConfig, load_faults, run_simulator, start_simulator
from stellara.store.admin import (
    check_key_fields,
    key_view,
    open_key_store,
    upgrade_database,
)
from stellara.store.db import redacted


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
    except StellaraError as exc:  # a bad argument, the database unreachable: one line
        print(f"stellara: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stellara", description="A fast AI gateway.")
    parser.add_argument("--version", action="version", version=f"stellara {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, help="YAML config file (docs/reference/config.md)")
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
    importer = config_commands.add_parser(
        "import-litellm",
        help="convert a LiteLLM proxy config: YAML on stdout, what is not mapped on stderr",
    )
    importer.add_argument("file", type=Path, help="the LiteLLM proxy config.yaml")
    importer.set_defaults(run=_config_import_litellm)

    _add_key_commands(commands)
    db = commands.add_parser("db", help="the usage store's database")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    db_upgrade = db_commands.add_parser(
        "upgrade", help="migrate usage_store.url to the newest schema"
    )
    db_upgrade.add_argument("--config", type=Path, required=True, help="YAML config file")
    db_upgrade.set_defaults(run=_db_upgrade)
    return parser


_KEYS_HELP = """Virtual API keys in the usage store (usage_store.url; migrated first).
Running gateways see a key created, revoked or changed here within usage_store.key_cache_ttl_s
seconds (default 5): the CLI cannot notify them. The admin API (/admin/keys) can: its changes
apply at once on every gateway sharing a Redis state backend."""


def _add_key_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="virtual API keys", description=_KEYS_HELP)
    actions = keys.add_subparsers(required=True, metavar="ACTION")

    create = actions.add_parser(
        "create", help="create a key and print it (shown only once)", description=_KEYS_HELP
    )
    create.add_argument("--user", required=True, help="the user the key stands for")
    create.add_argument("--team", help="the cache scope when cache.scope is team")
    create.add_argument("--tier", help="a tier of limits.tiers (used when the user has none)")
    create.add_argument(
        "--model",
        dest="models",
        action="extend",
        nargs="+",
        metavar="MODEL",
        help="public model(s) the key may use (default: every model)",
    )
    create.add_argument("--expires", help="expiry, ISO-8601 (e.g. 2030-01-31T00:00:00Z; UTC)")
    create.add_argument("--name", help="a label for people")
    create.add_argument(
        "--may-pin-variants",
        action="store_true",
        default=None,
        help="let the key pin an experiment's variant (x-stellara-variant)",
    )
    create.set_defaults(run=_keys_create)

    listing = actions.add_parser("list", help="list keys, oldest first")
    listing.add_argument("--user", help="only this user's keys")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    listing.set_defaults(run=_keys_list)

    revoke = actions.add_parser(
        "revoke", help="revoke a key (kept for the audit trail)", description=_KEYS_HELP
    )
    revoke.add_argument("key_id", help="the key's id (key_…), as create and list show it")
    revoke.set_defaults(run=_keys_revoke)

    for action in (create, listing, revoke):
        action.add_argument("--config", type=Path, required=True, help="YAML config file")
        action.add_argument("--json", action="store_true", help="print JSON")


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
    check_environment(config)  # here too: with --workers, each worker would report it
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    if args.workers > 1:
        return serve_workers(args.config, host=host, port=port, workers=args.workers)
    run_loop(lambda: serve(config, host=host, port=port, on_ready=_announce(host)))
    return 0


def _announce(host: str) -> Callable[[int], None]:
    def on_ready(port: int) -> None:
        print(f"Stellara listening on http://{host}:{port}", flush=True)

    return on_ready


async def _serve_demo(host: str, port: int) -> None:

    simulator = await start_simulator(SimConfig(per_token_ms=0.0))
    key, admin_key = new_demo_key(), new_admin_key()
    config = demo_config(simulator.url, key, host=host, port=port, admin_key=admin_key)
    try:
        await serve(
            config,
            host=host,
            port=port,
            on_ready=lambda bound: print(
                demo_banner(f"http://{host}:{bound}", key, admin_key), flush=True
            ),
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
    check_environment(config)
    print(f"{args.file}: OK")
    print(describe_routes(config))
    return 0


def _config_import_litellm(args: argparse.Namespace) -> int:
    conversion = convert_file(args.file)
    sys.stdout.write(render(conversion, source=str(args.file)))
    for note in conversion.notes:
        print(note, file=sys.stderr)
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


def _keys_create(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    given = {
        "user": args.user,
        "team": args.team,
        "tier": args.tier,
        "models": args.models,
        "name": args.name,
        "expires_at": args.expires,
        "may_pin_variants": args.may_pin_variants,
    }
    now = time.time()
    fields = check_key_fields(
        config, {k: v for k, v in given.items() if v is not None}, now=now, is_new=True
    )

    async def create() -> dict[str, Any]:
        async with open_key_store(config) as store:
            key, record = await store.create(now=now, **fields)
        return {"key_id": record.key_id, "key": key, **key_view(record, now)}

    _quiet_migrations()
    shown = asyncio.run(create())
    if args.json:
        _print_json(shown)
        return 0
    print(f"Created {shown['key_id']} for {shown['user']}. The key, shown only this once:\n")
    print(f"  {shown['key']}\n")
    for name in ("key_id", "prefix", "user", "team", "tier", "models", "expires_at", "name"):
        value = shown[name]
        print(f"{name:<11}{'all' if name == 'models' and value is None else _cell(value)}")
    ttl = config.usage_store.key_cache_ttl_s
    print(f"\nRunning gateways accept it within {ttl:g} s (usage_store.key_cache_ttl_s).")
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.user is not None:  # the rule a key's user follows, so a typo fails clearly
        check_key_fields(config, {"user": args.user}, now=0.0, is_new=False)

    async def listing() -> list[dict[str, Any]]:
        async with open_key_store(config) as store:
            records = await store.list(user=args.user, include_revoked=args.all)
        now = time.time()
        return [key_view(record, now) for record in records]

    _quiet_migrations()
    keys = asyncio.run(listing())
    if args.json:
        _print_json({"object": "list", "data": keys})
        return 0
    if not keys:
        print("No keys." if args.all else "No keys (revoked ones are shown with --all).")
        return 0
    columns = ("key_id", "prefix", "user", "team", "tier", "models", "status")
    rows = [[c.upper() for c in (*columns, "created", "expires", "name")]]
    for key in keys:
        row = [_cell(key[c]) for c in columns]
        row += [_short_time(key["created_at_epoch_s"]), _short_time(key["expires_at_epoch_s"])]
        rows.append([*row, _cell(key["name"])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def revoke() -> dict[str, Any] | None:
        async with open_key_store(config) as store:
            now = time.time()
            record = await store.revoke(args.key_id, now)
        return key_view(record, now) if record is not None else None

    _quiet_migrations()
    shown = asyncio.run(revoke())
    if shown is None:
        print(f"stellara: no key with id {args.key_id!r}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(shown)
        return 0
    ttl = config.usage_store.key_cache_ttl_s
    print(
        f"Revoked {shown['key_id']} ({shown['prefix']}…, user {shown['user']}) at "
        f"{shown['revoked_at']}. Running gateways refuse it within {ttl:g} s "
        "(usage_store.key_cache_ttl_s)."
    )
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _quiet_migrations()
    before, after = asyncio.run(upgrade_database(config.usage_store.url))
    where = redacted(config.usage_store.url)
    if before == after:
        print(f"{where}: up to date (revision {after}).")
    else:
        print(f"{where}: migrated from revision {before or 'none'} to {after}.")
    return 0


def _quiet_migrations() -> None:
    """Migrations log at INFO for the server's log; the admin commands print their own result."""
    logging.getLogger("stellara.store.migrate").setLevel(logging.WARNING)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def _short_time(epoch_s: float | None) -> str:
    if epoch_s is None:
        return "-"
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%MZ")


if __name__ == "__main__":
    raise SystemExit(main())
