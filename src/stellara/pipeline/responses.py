"""Stored responses of the Responses API: what `store: true` keeps, and who may read it.

One entry per answered response, in the state backend's `ResponsesStore` (Redis when the
state backend is Redis, so `previous_response_id` continues a conversation on any gateway
process): the `Response` as answered, the request's input items (normalized, with their ids:
what `GET /v1/responses/{id}/input_items` lists) and the canonical messages of the whole
conversation through this response (what the next turn's request starts from, so history is
never translated twice). Entries expire `responses.retention_s` after they were stored; all of
them together hold at most `responses.max_stored_bytes`, the oldest evicted first.

A response is stored as it is answered, without waiting for the backend's reply
(`ResponsesStore.start_put`): the write is on its way before the answer leaves, so a client
that continues at once finds it on any process; on this one, a read of a response whose
write is still in flight waits for it. A write that fails after the answer went out is
logged; the response then reads as unknown (404).

A key sees its own user's responses only; another user's id is answered as an unknown one
(404, never 403: an id must not tell whether it exists). The master key sees every user's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import msgspec

from stellara._tasks import unfinished
from stellara.config.models import ResponsesConfig
from stellara.errors import ResponseNotFoundError, StellaraError
from stellara.principal import Principal
from stellara.schema.chat import Message
from stellara.state.base import ResponsesStore, StoredResponse
from stellara.wire import responses as wire

logger = logging.getLogger(__name__)


class StoredTurn(msgspec.Struct, frozen=True):
    """One stored response: the answer, its input items and the conversation through it."""

    response: wire.Response
    items: list[wire.InputItem]
    messages: list[Message]


_encode = msgspec.json.Encoder().encode
_decode_turn = msgspec.json.Decoder(StoredTurn).decode


class StoredResponses:
    """Reads and writes `StoredTurn`s for callers; every method raises `StateBackendError`
    when the backend fails (the boundary answers 503)."""

    def __init__(self, store: ResponsesStore, config: ResponsesConfig) -> None:
        self._store = store
        self._config = config
        # Writes sent but not yet confirmed, by response id: what a read here waits for.
        self._writing: dict[str, asyncio.Task[None]] = {}

    def will_store(self, request: wire.ResponsesRequest) -> bool:
        """Whether this request's response is kept: OpenAI's default is yes; the config's
        `responses.store: false` keeps nothing whatever a request asks."""
        return self._config.store and request.store is not False

    async def conversation(self, previous_id: str | None, caller: Principal) -> list[Message]:
        """The canonical messages a request continuing `previous_id` starts from (none
        without one); 404 when that response is not the caller's to continue."""
        if previous_id is None:
            return []
        return (await self.find(previous_id, caller, param="previous_response_id")).messages

    async def save(self, turn: StoredTurn, user: str) -> None:
        """Keep `turn` under its response's id for `responses.retention_s`. Returns once the
        write is sent (see the module notes), not when it is done.

        Raises:
            StoredResponseTooLargeError: 413, the turn alone is larger than the whole store.
            StateBackendError: the write could not be sent.
        """
        response_id = turn.response.id
        written = await self._store.start_put(
            response_id,
            user,
            _encode(turn),
            self._config.retention_s,
            max_stored_bytes=self._config.max_stored_bytes,
        )
        task = asyncio.ensure_future(_confirmed(response_id, written))
        self._writing[response_id] = task
        task.add_done_callback(lambda _: self._writing.pop(response_id, None))

    async def drain(self) -> None:
        """Wait for the writes in flight (at shutdown, before the backend closes)."""
        while pending := unfinished(self._writing.values()):
            await asyncio.gather(*pending, return_exceptions=True)

    async def find(
        self, response_id: str, caller: Principal, *, param: str | None = None
    ) -> StoredTurn:
        return _decode_turn((await self._owned(response_id, caller, param)).blob)

    async def delete(self, response_id: str, caller: Principal) -> None:
        await self._owned(response_id, caller, None)
        if not await self._store.delete(response_id):
            raise _not_found(response_id, None)  # it expired or was deleted meanwhile

    async def _owned(
        self, response_id: str, caller: Principal, param: str | None
    ) -> StoredResponse:
        """The stored entry, when it is the caller's to read; else 404."""
        writing = self._writing.get(response_id)
        if writing is not None:
            await asyncio.shield(writing)  # never fails: `_confirmed` logs what did
        stored = await self._store.get(response_id)
        if stored is None or not _may_read(caller, stored.user):
            raise _not_found(response_id, param)
        return stored


async def _confirmed(response_id: str, written: Awaitable[None]) -> None:
    try:
        await written
    except StellaraError as exc:
        logger.warning("response %s was answered but not stored: %s", response_id, exc)


def _may_read(caller: Principal, owner: str) -> bool:
    return caller.is_master or caller.user == owner


def _not_found(response_id: str, param: str | None) -> ResponseNotFoundError:
    return ResponseNotFoundError(f"Response with id '{response_id}' not found.", param=param)
