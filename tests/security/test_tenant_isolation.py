"""The answer cache never serves one tenant's answer to another (DESIGN §2 `cache.scope`, §7).

Scope `user` (the default): every user has their own entries, exact and semantic alike.
Scope `team`: users of one team share, users of different teams do not. Scope `global`:
everyone shares, as documented.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import StartGateway, gateway_config, upstream_requests

KEYS = {
    "ann": "sk-tenant-ann-0000001",  # team red
    "ben": "sk-tenant-ben-0000002",  # team red
    "cid": "sk-tenant-cid-0000003",  # team blue
    "dee": "sk-tenant-dee-0000004",  # no team
}
TEAMS = {"ann": "red", "ben": "red", "cid": "blue", "dee": None}
PROMPT = "What is the capital of the tenant isolation test?"
CACHES = {
    "exact": {},
    "semantic": {"semantic": {"enabled": True}},
}


def config(sim_url: str, cache: dict[str, Any]) -> dict[str, Any]:
    keys = [
        {"key": key, "user": user, **({"team": TEAMS[user]} if TEAMS[user] else {})}
        for user, key in KEYS.items()
    ]
    return gateway_config(sim_url, keys=keys, cache=cache)


async def ask(
    http: aiohttp.ClientSession, url: str, user: str, prompt: str = PROMPT
) -> tuple[str, str]:
    """The `x-stellara-cache` header and answer text of one chat call as `user`."""
    body = {"model": "test-model", "messages": [{"role": "user", "content": prompt}]}
    headers = {"Authorization": f"Bearer {KEYS[user]}"}
    async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        answer = await response.json()
        return response.headers["x-stellara-cache"], answer["choices"][0]["message"]["content"]


async def upstream_count(sim: RunningSimulator) -> int:
    return sum(r["path"] == "/v1/chat/completions" for r in await upstream_requests(sim))


@pytest.mark.parametrize("kind", CACHES)
async def test_user_scope_keeps_users_apart(
    kind: str, sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(config(sim.url, CACHES[kind]))
    assert (await ask(http, gateway.url, "ann"))[0] == "miss"
    assert (await ask(http, gateway.url, "ann"))[0] == "hit"  # the cache is on
    assert await upstream_count(sim) == 1
    # Same team, same prompt: still a miss with scope user, answered upstream.
    for n, user in enumerate(("ben", "cid", "dee"), start=2):
        assert (await ask(http, gateway.url, user))[0] == "miss", user
        assert await upstream_count(sim) == n
        assert (await ask(http, gateway.url, user))[0] == "hit", user


async def test_semantic_lookup_stays_within_the_user(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    """A near-identical prompt is a semantic hit for its own user only."""
    gateway = await start_gateway(config(sim.url, CACHES["semantic"]))
    assert (await ask(http, gateway.url, "ann"))[0] == "miss"
    reworded = PROMPT.replace("What is", "What's")
    assert (await ask(http, gateway.url, "ann", reworded))[0] == "semantic"
    assert (await ask(http, gateway.url, "ben", reworded))[0] == "miss"
    assert (await ask(http, gateway.url, "cid", PROMPT))[0] == "miss"


@pytest.mark.parametrize("kind", CACHES)
async def test_team_scope_shares_within_a_team_only(
    kind: str, sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(config(sim.url, {**CACHES[kind], "scope": "team"}))
    status, first = await ask(http, gateway.url, "ann")
    assert status == "miss"
    status, shared = await ask(http, gateway.url, "ben")  # same team
    assert status in ("hit", "semantic")
    assert shared == first
    assert await upstream_count(sim) == 1
    assert (await ask(http, gateway.url, "cid"))[0] == "miss"  # another team
    assert (await ask(http, gateway.url, "dee"))[0] == "miss"  # no team: their own scope
    assert await upstream_count(sim) == 3


@pytest.mark.parametrize("kind", CACHES)
async def test_global_scope_shares_between_everyone(
    kind: str, sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(config(sim.url, {**CACHES[kind], "scope": "global"}))
    status, first = await ask(http, gateway.url, "ann")
    assert status == "miss"
    for user in ("ben", "cid", "dee"):
        status, answer = await ask(http, gateway.url, user)
        assert status in ("hit", "semantic"), user
        assert answer == first
    assert await upstream_count(sim) == 1


async def test_warmed_entry_serves_only_its_user(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    """`cache/warm` fills one user's scope: another user asking the same is a miss."""
    raw = config(sim.url, {})
    gateway = await start_gateway(raw)
    entry = {
        "user": "ann",
        "model": "test-model",
        "messages": [{"role": "user", "content": PROMPT}],
        "response": "only for ann",
    }
    headers = {"Authorization": f"Bearer {raw['server']['master_key']}"}
    async with http.post(
        f"{gateway.url}/ai-orchestration/cache/warm", json={"entries": [entry]}, headers=headers
    ) as response:
        assert response.status == 200
    assert await ask(http, gateway.url, "ann") == ("hit", "only for ann")
    status, answer = await ask(http, gateway.url, "ben")
    assert status == "miss"
    assert answer != "only for ann"
