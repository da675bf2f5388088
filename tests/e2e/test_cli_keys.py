"""`stellara keys …` and `stellara db upgrade` as an operator runs them: real processes against
a SQLite file and a PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellara.pipeline.auth import Authenticator
from stellara.store.db import Database
from stellara.store.keys import KeyStore
from stellara.store.migrate import HEAD_REVISION

pytestmark = pytest.mark.e2e

STELLARA = [sys.executable, "-m", "stellara.cli"]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def stellara(*args: str | Path) -> Run:
    process = await asyncio.create_subprocess_exec(
        *STELLARA,
        *(str(arg) for arg in args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


def write_config(tmp_path: Path, url: str, name: str = "stellara.yaml") -> Path:
    config = {
        "usage_store": {"url": url, "key_cache_ttl_s": 3},
        "providers": [
            {"id": "sim", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"}
        ],
        "models": [
            {"name": "smart", "targets": [{"provider": "sim", "model": "gpt-4o"}]},
            {"name": "cheap", "targets": [{"provider": "sim", "model": "gpt-4o-mini"}]},
        ],
        "limits": {"tiers": {"pro": {"rate": {"requests": 100}}}},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def assert_one_line_error(run: Run, *fragments: str) -> None:
    assert run.code == 1, run
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in run.stderr


async def test_cli_keys_create_list_revoke_round_trip(database_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, database_url)
    create = await stellara(
        "keys", "create", "--config", config, "--user", "alice", "--tier", "pro",
        "--model", "smart", "cheap", "--team", "lab", "--name", "ci",
        "--expires", "2099-01-01T00:00:00Z", "--may-pin-variants", "--json",
    )  # fmt: skip
    assert create.code == 0, create.stderr
    created = create.json()
    assert created["may_pin_variants"] is True
    key, key_id = created["key"], created["key_id"]
    assert (created["user"], created["tier"], created["team"]) == ("alice", "pro", "lab")
    assert created["models"] == ["smart", "cheap"]
    assert created["expires_at"] == "2099-01-01T00:00:00Z"

    database = Database(database_url)  # the gateway's authenticator accepts the printed key
    try:
        principal = await Authenticator(None, [], store=KeyStore(database)).authenticate(key)
    finally:
        await database.close()
    assert (principal.user, principal.key_id, principal.tier) == ("alice", key_id, "pro")
    assert principal.may_pin_variants

    listed = await stellara("keys", "list", "--config", config)
    assert listed.code == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:3] == ["KEY_ID", "PREFIX", "USER"]
    assert row.split()[:7] == [key_id, key[:12], "alice", "lab", "pro", "smart,cheap", "active"]
    assert key not in listed.stdout

    revoke = await stellara("keys", "revoke", "--config", config, key_id)
    assert revoke.code == 0, revoke.stderr
    assert f"Revoked {key_id}" in revoke.stdout
    assert "within 3 s" in revoke.stdout

    active, everything = await asyncio.gather(
        stellara("keys", "list", "--config", config, "--json"),
        stellara("keys", "list", "--config", config, "--all", "--user", "alice", "--json"),
    )
    assert active.json()["data"] == []
    [shown] = everything.json()["data"]
    assert (shown["key_id"], shown["status"]) == (key_id, "revoked")
    assert "key" not in shown


async def test_cli_keys_create_prints_the_key_once_in_a_readable_form(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'keys.db'}")
    create = await stellara("keys", "create", "--config", config, "--user", "bob")
    assert create.code == 0, create.stderr
    lines = create.stdout.splitlines()
    key = lines[2].strip()
    assert key.startswith("sk-stl-")
    assert create.stdout.count(key) == 1
    assert "models     all" in create.stdout
    assert "within 3 s (usage_store.key_cache_ttl_s)" in create.stdout
    assert create.stderr == ""  # the migration's log lines stay quiet


async def test_cli_keys_bad_input_fails_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'keys.db'}")
    unreachable = write_config(tmp_path, "postgresql://nobody@127.0.0.1:1/none", "down.yaml")
    runs = await asyncio.gather(  # the checks themselves are the admin API's (its tests)
        stellara("keys", "create", "--config", config, "--user", "alice", "--model", "nope"),
        stellara("keys", "revoke", "--config", config, "key_00000000000000000000"),
        stellara("keys", "list", "--config", unreachable),
        stellara("keys", "list", "--config", tmp_path / "missing.yaml"),
    )
    assert_one_line_error(runs[0], "Unknown model 'nope'", "cheap, smart")
    assert_one_line_error(runs[1], "no key with id 'key_00000000000000000000'")
    assert_one_line_error(runs[2], "cannot be opened", "127.0.0.1:1")
    assert_one_line_error(runs[3], "missing.yaml", "cannot read")
    listed = await stellara("keys", "list", "--config", config, "--all", "--json")
    assert listed.json()["data"] == []  # nothing was created by the refused commands


async def test_cli_db_upgrade_migrates_once_then_reports_up_to_date(
    database_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, database_url)
    first = await stellara("db", "upgrade", "--config", config)
    assert first.code == 0, first.stderr
    assert f"migrated from revision none to {HEAD_REVISION}" in first.stdout
    second = await stellara("db", "upgrade", "--config", config)
    assert second.code == 0, second.stderr
    assert f"up to date (revision {HEAD_REVISION})" in second.stdout
    assert "password" not in second.stdout
