"""A hostile tenant, run as a process of its own: connections that send huge `/v1/messages`
bodies back to back until told to stop, then print the statuses answered.

    python benchmarks/body_flood.py URL SECONDS KIND=KEY [KIND=KEY ...]

One connection per KIND=KEY, sending that kind of body with that key: `blocks` is 110,000 tiny
content blocks (3.5 MB), `word` one 3 MB word, the two bodies of issue 25's probe. Its own
process, so that another tenant's latency is measured on a loop that does nothing else. Used by
`tests/reliability/test_large_body_flood.py` and the reliability suite's hostile-tenant rows.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time

import aiohttp


def blocks_body() -> bytes:
    blocks = [{"type": "text", "text": "hi"}] * 110_000
    return _messages_body(blocks)


def word_body() -> bytes:
    return _messages_body([{"type": "text", "text": "a" * 3_000_000}])


BODIES = {"blocks": blocks_body, "word": word_body}


def _messages_body(content: list[dict[str, str]]) -> bytes:
    message = {"role": "user", "content": content}
    return json.dumps({"model": "m", "max_tokens": 16, "messages": [message]}).encode()


async def flood(url: str, seconds: float, senders: list[tuple[str, str]]) -> dict[str, int]:
    """Statuses answered, as `"<kind> <status>"`: counts. `senders`: (kind, key) per connection."""
    bodies = {kind: BODIES[kind]() for kind in {kind for kind, _ in senders}}
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + seconds

    async def connection(kind: str, key: str) -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                data = io.BytesIO(bodies[kind])  # not bytes: aiohttp warns of large bytes bodies
                async with http.post(f"{url}/v1/messages", data=data, headers=headers) as answer:
                    await answer.read()
                    seen = f"{kind} {answer.status}"
                    statuses[seen] = statuses.get(seen, 0) + 1

    await asyncio.gather(*(connection(kind, key) for kind, key in senders))
    return statuses


def main() -> None:
    url, seconds = sys.argv[1], float(sys.argv[2])
    senders = [(kind, key) for kind, _, key in (arg.partition("=") for arg in sys.argv[3:])]
    unknown = {kind for kind, _ in senders} - BODIES.keys()
    if unknown or not senders:
        raise SystemExit(f"KIND=KEY with KIND one of {sorted(BODIES)}; got {sys.argv[3:]}")
    print(json.dumps(asyncio.run(flood(url, seconds, senders))))


if __name__ == "__main__":
    main()
