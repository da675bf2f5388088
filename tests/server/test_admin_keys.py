"""The admin API of virtual keys and users (`server/routes/keys.py`), on SQLite and PostgreSQL.

The routes run in a small app with the real `Authenticator` on the same store, so a test can
show that a key created, changed or revoked here is seen by authentication at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stellara.assembly import build_runtime
from stellara.assembly.config import check_config
from stellara.config.models import StellaraConfig
from stellara.errors import AuthenticationError
from stellara.pipeline.auth import Authenticator
from stellara.store.keys import KeyStore
from stellara.store.migrate import upgrade
from stellara.testing import ManualClock
from tests.conftest import MASTER_KEY, USER_KEY, gateway_config, routes_only
from tests.limits.fakes import START

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
DAY_S = 86_400.0
TIERS = {"free": {"rate": {"requests": 10}}, "pro": {"rate": {"requests": 100}}}


class RecordingAuthenticator(Authenticator):
    """The real authenticator, noting which digests the routes told it to forget."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.forgotten: list[str] = []

    def forget(self, digest: str) -> None:
        self.forgotten.append(digest)
        super().forget(digest)


@dataclass
class Admin:
    client: TestClient[web.Request, web.Application]
    auth: RecordingAuthenticator
    clock: ManualClock
    store: KeyStore

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        response = await self.client.request(
            method, path, json=body, headers=MASTER if headers is None else headers
        )
        assert response.content_type == "application/json"
        return response.status, await response.json()

    async def create(self, **fields: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "/admin/keys", fields)
        assert status == 201, body
        return dict(body)


def admin_config(database_url: str) -> StellaraConfig:
    raw = gateway_config("http://127.0.0.1:9", usage_store={"url": database_url})
    raw["limits"] = {"tiers": TIERS, "users": {"carol": {"tier": "pro"}}}
    raw["keys"][0]["tier"] = "free"  # alice's static key
    return check_config(raw)


@asynccontextmanager
async def running_admin(url: str, *, migrate: bool = True) -> AsyncIterator[Admin]:
    clock = ManualClock(START)
    config = admin_config(url)
    runtime = build_runtime(config, clock=clock)
    try:
        if migrate:
            await upgrade(runtime.database)
        store = runtime.key_store
        auth = RecordingAuthenticator(MASTER_KEY, config.keys, store=store, clock=clock)
        app = routes_only(replace(runtime, auth=auth))
        async with TestClient(TestServer(app)) as client:
            yield Admin(client, auth, clock, store)
    finally:
        await runtime.database.close()


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[Admin]:
    async with running_admin(database_url) as running:
        yield running


@pytest.fixture
async def sqlite_admin(tmp_path: Path) -> AsyncIterator[Admin]:
    """For what never reaches the database (validation, auth): one database kind is enough."""
    async with running_admin(f"sqlite:///{tmp_path / 'keys.db'}") as running:
        yield running


async def test_admin_keys_create_shows_key_once_then_only_its_prefix(admin: Admin) -> None:
    created = await admin.create(
        user="alice",
        team="research",
        tier="pro",
        models=["test-model", "test-model"],
        limits={"rate": {"requests": 3}},
        name="ci bot",
        expires_at="2026-02-01T00:00:00Z",
    )
    key = created["key"]
    assert key.startswith("sk-stl-")
    assert list(created)[:3] == ["key_id", "key", "prefix"]
    assert created["prefix"] == key[:12]
    assert created["models"] == ["test-model"]
    assert created["limits"] == {"rate": {"requests": 3}}
    assert created["created_at"] == "2026-01-01T00:00:00Z"
    assert created["created_at_epoch_s"] == START
    assert created["expires_at"] == "2026-02-01T00:00:00Z"
    assert created["status"] == "active"

    status, shown = await admin.call("GET", f"/admin/keys/{created['key_id']}")
    assert status == 200
    assert shown == {name: value for name, value in created.items() if name != "key"}
    assert key not in str(shown)
    assert "digest" not in shown

    principal = await admin.auth.authenticate(key)
    assert (principal.user, principal.tier, principal.team) == ("alice", "pro", "research")
    assert principal.allowed_models == frozenset({"test-model"})
    record = await admin.store.get(created["key_id"])
    assert record is not None
    assert admin.auth.forgotten == [record.digest]


async def test_admin_keys_expiry_accepts_epoch_seconds_and_naive_iso_as_utc(
    sqlite_admin: Admin,
) -> None:
    by_epoch = await sqlite_admin.create(user="alice", expires_at=START + DAY_S)
    naive = await sqlite_admin.create(user="alice", expires_at="2026-01-02T00:00:00")
    offset = await sqlite_admin.create(user="alice", expires_at="2026-01-02T02:00:00+02:00")
    assert by_epoch["expires_at"] == naive["expires_at"] == offset["expires_at"]
    assert by_epoch["expires_at"] == "2026-01-02T00:00:00Z"
    assert by_epoch["expires_at_epoch_s"] == START + DAY_S


async def test_admin_keys_list_filters_by_user_and_shows_revoked_only_when_asked(
    admin: Admin,
) -> None:
    first = await admin.create(user="alice")
    admin.clock.advance(1)
    second = await admin.create(user="bob")
    admin.clock.advance(1)
    third = await admin.create(user="alice")
    status, _ = await admin.call("DELETE", f"/admin/keys/{third['key_id']}")
    assert status == 200

    _, listed = await admin.call("GET", "/admin/keys")
    assert [k["key_id"] for k in listed["data"]] == [first["key_id"], second["key_id"]]
    assert listed["object"] == "list"
    assert listed["has_more"] is False
    assert all("key" not in k for k in listed["data"])
    _, alice = await admin.call("GET", "/admin/keys?user=alice&include_revoked=true")
    assert [(k["key_id"], k["status"]) for k in alice["data"]] == [
        (first["key_id"], "active"),
        (third["key_id"], "revoked"),
    ]
    _, nobody = await admin.call("GET", "/admin/keys?user=zed")
    assert nobody["data"] == []


async def test_admin_keys_patch_changes_fields_and_authentication_sees_it_at_once(
    admin: Admin,
) -> None:
    created = await admin.create(user="alice", tier="pro", team="a", name="old")
    key_id = created["key_id"]
    before = await admin.auth.authenticate(created["key"])  # now cached in the authenticator
    assert before.tier == "pro"

    status, changed = await admin.call(
        "PATCH",
        f"/admin/keys/{key_id}",
        {"tier": "free", "team": None, "models": ["other-model"], "limits": {"rate": None}},
    )
    assert status == 200, changed
    assert (changed["tier"], changed["team"], changed["name"]) == ("free", None, "old")
    assert changed["models"] == ["other-model"]
    assert changed["limits"] == {"rate": None}
    after = await admin.auth.authenticate(created["key"])
    assert (after.tier, after.team) == ("free", None)
    assert after.allowed_models == frozenset({"other-model"})
    assert len(admin.auth.forgotten) == 2

    _, shown = await admin.call("GET", f"/admin/keys/{key_id}")
    assert shown == changed
    status, unchanged = await admin.call("PATCH", f"/admin/keys/{key_id}", {})
    assert (status, unchanged) == (200, changed)


async def test_admin_keys_patch_may_set_a_past_expiry_which_expires_the_key(
    sqlite_admin: Admin,
) -> None:
    created = await sqlite_admin.create(user="alice")
    path = f"/admin/keys/{created['key_id']}"
    status, changed = await sqlite_admin.call("PATCH", path, {"expires_at": START - 1})
    assert status == 200
    assert changed["status"] == "expired"
    with pytest.raises(AuthenticationError, match="expired"):
        await sqlite_admin.auth.authenticate(created["key"])


async def test_admin_keys_delete_revokes_everywhere_and_keeps_the_first_time(
    admin: Admin,
) -> None:
    created = await admin.create(user="alice")
    await admin.auth.authenticate(created["key"])  # cached as valid
    path = f"/admin/keys/{created['key_id']}"

    status, revoked = await admin.call("DELETE", path)
    assert status == 200
    assert (revoked["status"], revoked["revoked_at"]) == ("revoked", "2026-01-01T00:00:00Z")
    with pytest.raises(AuthenticationError, match="revoked"):
        await admin.auth.authenticate(created["key"])

    admin.clock.advance(60)
    status, again = await admin.call("DELETE", path)
    assert (status, again["revoked_at_epoch_s"]) == (200, START)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("key_id", ["key_00000000000000000000", "k" * 80, "key%00x"])
async def test_admin_keys_unknown_id_is_404_key_not_found(
    admin: Admin, method: str, key_id: str
) -> None:
    body = {"name": "x"} if method == "PATCH" else None
    status, error = await admin.call(method, f"/admin/keys/{key_id}", body)
    assert status == 404
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["code"] == "key_not_found"


LONG = "x" * 257


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "needs a 'user'"),
        ({"user": ""}, "'user' must not be empty"),
        ({"user": "   "}, "'user' must not be empty"),
        ({"user": LONG}, "'user' is longer than 256"),
        ({"user": 7}, "'user' must be a string"),
        ({"user": None}, "'user' must be a string"),
        ({"user": "a\x00b"}, "NUL"),
        ({"user": "alice", "team": LONG}, "'team' is longer than 256"),
        ({"user": "alice", "name": ""}, "use null to clear"),
        ({"user": "alice", "models": ["test-model", "nope"]}, "Unknown model 'nope'"),
        ({"user": "alice", "models": "test-model"}, "'models' must be a list"),
        ({"user": "alice", "models": []}, "at least one model"),
        ({"user": "alice", "tier": "gold"}, "Unknown tier 'gold' (tiers: free, pro)"),
        ({"user": "alice", "limits": {"rate": {"requests": -1}}}, "limits.rate.requests"),
        ({"user": "alice", "limits": {"bogus": 1}}, "limits.bogus"),
        ({"user": "alice", "limits": [1]}, "'limits' must be an object"),
        ({"user": "alice", "expires_at": "2025-12-31T23:59:59Z"}, "in the past"),
        ({"user": "alice", "expires_at": START}, "in the past"),
        ({"user": "alice", "expires_at": "next week"}, "not an ISO-8601 time"),
        ({"user": "alice", "expires_at": True}, "'expires_at' must be"),
        ({"user": "alice", "expires_at": 1e20}, "out of range"),
        ({"user": "alice", "owner": "bob"}, "Unknown field 'owner'"),
    ],
)
async def test_admin_keys_create_rejects_bad_fields_with_400(
    sqlite_admin: Admin, body: dict[str, Any], message: str
) -> None:
    status, error = await sqlite_admin.call("POST", "/admin/keys", body)
    assert status == 400
    assert message in error["error"]["message"]
    assert error["error"]["type"] == "invalid_request_error"
    _, listed = await sqlite_admin.call("GET", "/admin/keys?include_revoked=true")
    assert listed["data"] == []


async def test_admin_keys_create_accepts_the_implicit_default_tier(sqlite_admin: Admin) -> None:
    created = await sqlite_admin.create(user="alice", tier="default")
    assert created["tier"] == "default"


@pytest.mark.parametrize(
    ("method", "raw", "message"),
    [
        ("POST", b"{not json", "not valid JSON"),
        ("POST", b"", "not valid JSON"),
        ("POST", b'["alice"]', "must be a JSON object"),
        ("PATCH", b'"x"', "must be a JSON object"),
    ],
)
async def test_admin_keys_malformed_bodies_are_400(
    sqlite_admin: Admin, method: str, raw: bytes, message: str
) -> None:
    created = await sqlite_admin.create(user="alice")
    path = "/admin/keys" if method == "POST" else f"/admin/keys/{created['key_id']}"
    response = await sqlite_admin.client.request(method, path, data=raw, headers=MASTER)
    assert response.status == 400
    assert message in (await response.json())["error"]["message"]


async def test_admin_keys_patch_rejects_bad_fields_and_changes_nothing(
    sqlite_admin: Admin,
) -> None:
    created = await sqlite_admin.create(user="alice", tier="pro")
    path = f"/admin/keys/{created['key_id']}"
    for body in ({"user": None}, {"tier": "gold", "name": "x"}, {"digest": "0" * 64}):
        status, _ = await sqlite_admin.call("PATCH", path, body)
        assert status == 400
    _, shown = await sqlite_admin.call("GET", path)
    assert (shown["user"], shown["tier"], shown["name"]) == ("alice", "pro", None)
    assert sqlite_admin.auth.forgotten[1:] == []


async def test_admin_keys_bad_query_flag_is_400(sqlite_admin: Admin) -> None:
    status, error = await sqlite_admin.call("GET", "/admin/keys?include_revoked=maybe")
    assert status == 400
    assert "include_revoked" in error["error"]["message"]


ROUTES = [
    ("POST", "/admin/keys"),
    ("GET", "/admin/keys"),
    ("GET", "/admin/keys/key_00000000000000000000"),
    ("PATCH", "/admin/keys/key_00000000000000000000"),
    ("DELETE", "/admin/keys/key_00000000000000000000"),
    ("GET", "/admin/users"),
    ("GET", "/admin/users/alice"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_admin_keys_routes_need_the_master_key(
    sqlite_admin: Admin, method: str, path: str
) -> None:
    body = {"user": "alice"}
    status, error = await sqlite_admin.call(method, path, body, headers={})
    assert (status, error["error"]["type"]) == (401, "authentication_error")
    wrong = {"Authorization": "Bearer sk-not-a-key-at-all"}
    status, error = await sqlite_admin.call(method, path, body, headers=wrong)
    assert (status, error["error"]["type"]) == (401, "authentication_error")
    user = {"Authorization": f"Bearer {USER_KEY}"}
    status, error = await sqlite_admin.call(method, path, body, headers=user)
    assert (status, error["error"]["type"]) == (403, "permission_error")
    _, listed = await sqlite_admin.call("GET", "/admin/keys")
    assert listed["data"] == []


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_admin_keys_store_failure_is_503(tmp_path: Path, method: str, path: str) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'keys.db'}"
    async with running_admin(url, migrate=False) as broken:
        status, error = await broken.call(method, path, {"user": "alice"})
    assert status == 503
    assert error["error"]["code"] == "store_unavailable"


async def test_admin_users_lists_config_and_store_users_with_effective_tiers(
    admin: Admin,
) -> None:
    await admin.create(user="carol", tier="free", team="t1")  # limits.users says pro
    await admin.create(user="dave", tier="pro", team="t2")
    admin.clock.advance(1)  # the oldest key's tier is the user's `tier`
    await admin.create(user="dave", team="t3")  # no tier of its own: the default one
    erin = await admin.create(user="erin", tier="pro")
    await admin.call("DELETE", f"/admin/keys/{erin['key_id']}")
    await admin.create(user="frank", expires_at=START + 10)
    admin.clock.advance(20)  # frank's key has expired

    status, listed = await admin.call("GET", "/admin/users")
    assert status == 200
    users = {entry["user"]: entry for entry in listed["data"]}
    assert list(users) == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert users["alice"] == {
        "user": "alice",
        "tier": "free",  # its static key's tier
        "tiers": ["free"],
        "teams": [],
        "active_keys": 1,
        "static_keys": 1,
    }
    assert (users["bob"]["tier"], users["bob"]["active_keys"]) == ("default", 1)
    assert (users["carol"]["tier"], users["carol"]["teams"]) == ("pro", ["t1"])
    assert users["dave"]["tier"] == "pro"
    assert users["dave"]["tiers"] == ["default", "pro"]
    assert users["dave"]["teams"] == ["t2", "t3"]
    assert (users["dave"]["active_keys"], users["dave"]["static_keys"]) == (2, 0)
    assert (users["erin"]["tier"], users["erin"]["active_keys"]) == ("default", 0)
    assert users["frank"]["active_keys"] == 0


async def test_admin_user_shows_their_keys_and_unknown_users_are_404(admin: Admin) -> None:
    kept = await admin.create(user="dave", tier="pro")
    admin.clock.advance(1)
    gone = await admin.create(user="dave")
    await admin.call("DELETE", f"/admin/keys/{gone['key_id']}")
    await admin.create(user="erin")

    status, dave = await admin.call("GET", "/admin/users/dave")
    assert status == 200
    assert (dave["user"], dave["tier"], dave["active_keys"]) == ("dave", "pro", 1)
    assert [(k["key_id"], k["status"]) for k in dave["keys"]] == [
        (kept["key_id"], "active"),
        (gone["key_id"], "revoked"),
    ]
    assert all("key" not in k and "digest" not in k for k in dave["keys"])

    status, carol = await admin.call("GET", "/admin/users/carol")  # from limits.users only
    assert (status, carol["tier"], carol["keys"]) == (200, "pro", [])
    for unknown in ("zed", "x" * 300):
        status, error = await admin.call("GET", f"/admin/users/{unknown}")
        assert (status, error["error"]["code"]) == (404, "user_not_found")
