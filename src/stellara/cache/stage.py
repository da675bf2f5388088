"""The cache stage of the request path: when to look up and store, under which key, and the
semantic level on top of the exact one.

Bypassed (no lookup, no store): requests whose answers are meant to vary (temperature above
`max_temperature`, `n > 1`), that ask for what a stored answer does not keep (logprobs,
audio), and clients that say so (`Cache-Control: no-cache` skips the
lookup, `no-store` the store; `x-stellara-cache-ttl` sets the stored entry's TTL).

With a shared L2, the semantic index (in process) is shared through it: every entry added here
is also recorded in the L2 (`CacheStore.put_semantic`), the other processes' entries are added
as they are heard, and a starting process rebuilds its index with `restore_shared`. A clear
heard from another process drops the whole local index, as a local clear does.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from stellara import _json
from stellara._clock import Clock
from stellara.cache.exact import ExactCache
from stellara.cache.key import cache_key, semantic_namespace
from stellara.cache.l1 import CachedAnswer, LevelStats
from stellara.config.models import CacheConfig
from stellara.errors import StateBackendError
from stellara.principal import Principal
from stellara.schema.chat import (
    ChatCompletion,
    ChatRequest,
    TextPart,
    UserMessage,
    completion_decoder,
)
from stellara.state.base import Invalidation

if TYPE_CHECKING:  # numpy and the model load only when the semantic level is on
    from stellara.cache.semantic import SemanticCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CacheControl:
    """What the client asked of the cache for this request."""

    no_lookup: bool = False
    no_store: bool = False
    ttl_s: float | None = None


@dataclass(frozen=True, slots=True)
class CachePlan:
    """The cache decisions for one request, made before routing."""

    key: str
    scope: str
    model: str
    lookup: bool
    store: bool
    ttl_s: float
    namespace: str | None  # semantic namespace, None when the semantic level does not apply
    question: str | None  # the last user turn, what the semantic level compares


@dataclass(frozen=True, slots=True)
class CacheHit:
    completion: ChatCompletion
    kind: str  # "hit" or "semantic"


class AnswerCache:
    """Exact and semantic answer caching for chat requests."""

    def __init__(
        self,
        config: CacheConfig,
        exact: ExactCache,
        semantic: SemanticCache | None,
        clock: Clock,
    ) -> None:
        self.config = config
        self.exact = exact
        self.semantic = semantic
        self._clock = clock
        l2 = exact.l2
        if semantic is not None and l2 is not None:
            l2.on_semantic(self._heard_semantic)
            l2.on_invalidation(self._heard_invalidation)

    def scope_of_user(self, user: str) -> str:
        return "g" if self.config.scope == "global" else f"u:{user}"

    def scope_of(self, principal: Principal) -> str:
        if self.config.scope == "global":
            return "g"
        if self.config.scope == "team" and principal.team:
            return f"t:{principal.team}"
        return f"u:{principal.user}"

    def plan(
        self,
        principal: Principal,
        request: ChatRequest,
        control: CacheControl,
        partition: str = "",
    ) -> CachePlan | None:
        """None when this request bypasses the cache altogether. `partition` keeps an
        experiment's variants from serving each other's answers (see `cache_key`)."""
        if (request.n or 1) > 1 or (request.temperature or 0) > self.config.max_temperature:
            return None
        if request.logprobs or (request.modalities and "audio" in request.modalities):
            return None  # logprobs and audio do not survive a stored answer
        if control.no_lookup and control.no_store:
            return None
        scope = self.scope_of(principal)
        question = _last_user_text(request) if self.semantic is not None else None
        namespace = None
        if question is not None:
            context = _context_fingerprint(request) + partition
            namespace = semantic_namespace(scope, request.model, context)
        return CachePlan(
            key=cache_key(scope, request, partition),
            scope=scope,
            model=request.model,
            lookup=not control.no_lookup,
            store=not control.no_store,
            ttl_s=control.ttl_s if control.ttl_s is not None else self.config.l1.ttl_s,
            namespace=namespace,
            question=question,
        )

    async def lookup(self, plan: CachePlan) -> CacheHit | None:
        if not plan.lookup:
            return None
        answer = await self.exact.get(plan.key)
        if answer is not None:
            return CacheHit(completion_decoder.decode(answer.body), "hit")
        if self.semantic is None or plan.namespace is None or plan.question is None:
            return None
        match = await self.semantic.lookup(plan.namespace, plan.question)
        if match is None:
            return None
        answer = await self.exact.get(match.key)
        if answer is None:  # the exact entry expired or was cleared: forget the vector too
            self.semantic.remove(match.key)
            return None
        return CacheHit(completion_decoder.decode(answer.body), "semantic")

    async def stale(self, plan: CachePlan) -> ChatCompletion | None:
        """An expired answer kept for degraded replies, when every provider failed."""
        answer = await self.exact.get(plan.key, allow_stale=True)
        return completion_decoder.decode(answer.body) if answer is not None else None

    async def store(self, plan: CachePlan, completion: ChatCompletion) -> None:
        if not plan.store:
            return
        await self.put(plan.key, plan.scope, plan.model, _json.encode(completion), plan.ttl_s)
        if self.semantic is not None and plan.namespace and plan.question:
            await self._add_semantic(plan.namespace, plan.key, plan.question, plan.ttl_s)

    async def put(self, key: str, scope: str, model: str, body: bytes, ttl_s: float) -> None:
        now = self._clock.time()
        expires_at = now + ttl_s
        answer = CachedAnswer(body, expires_at, expires_at + self.config.stale_ttl_s, scope, model)
        await self.exact.put(key, answer)

    async def warm(self, user: str, request: ChatRequest, completion: ChatCompletion) -> None:
        """Store `completion` as the answer to `request` from `user`, so that the same
        request afterwards is a hit (the user's scope: warming a team needs a team key)."""
        scope = self.scope_of_user(user)
        body = _json.encode(completion)
        ttl_s = self.config.l1.ttl_s
        await self.put(cache_key(scope, request), scope, request.model, body, ttl_s)
        question = _last_user_text(request) if self.semantic is not None else None
        if self.semantic is not None and question is not None:
            namespace = semantic_namespace(scope, request.model, _context_fingerprint(request))
            await self._add_semantic(namespace, cache_key(scope, request), question, ttl_s)

    async def restore_shared(self) -> int:
        """Rebuild the semantic index from the entries the shared L2 keeps (at start-up);
        how many were restored. Failures are logged: the index then fills as it goes."""
        semantic, l2 = self.semantic, self.exact.l2
        if semantic is None or l2 is None:
            return 0
        try:
            entries = await l2.load_semantic(semantic.index.max_entries)
        except StateBackendError as exc:
            logger.warning("semantic cache entries not loaded from L2: %s", exc.message)
            return 0
        return sum(self._restore(*entry) for entry in entries)

    async def _add_semantic(self, namespace: str, key: str, question: str, ttl_s: float) -> None:
        """Index `question` here and, with a shared L2, record it there for the others."""
        assert self.semantic is not None
        await self.semantic.add(namespace, key, question)
        vector = self.semantic.vector_bytes_of(question)
        if self.exact.l2 is None or vector is None:
            return
        try:
            await self.exact.l2.put_semantic(namespace, key, question, vector, ttl_s)
        except StateBackendError as exc:
            self.exact.l2_stats.errors += 1
            logger.warning("semantic cache entry not shared through L2: %s", exc.message)

    def _restore(self, namespace: str, key: str, text: str, vector: bytes) -> bool:
        assert self.semantic is not None
        try:
            self.semantic.restore(namespace, key, text, vector)
        except ValueError:  # another dimension (another model), or not whole floats
            logger.warning("ignoring a semantic cache entry that does not fit the index: %r", key)
            return False
        return True

    def _heard_semantic(self, namespace: str, key: str, text: str, vector: bytes) -> None:
        self._restore(namespace, key, text, vector)

    def _heard_invalidation(self, invalidation: Invalidation) -> None:
        # A clear elsewhere: entries may point at answers that are gone (a single key is
        # dropped when it matches, as an expired answer is).
        if self.semantic is not None and invalidation.key is None:
            self.semantic.clear()

    def stats(self) -> dict[str, Any]:
        """Per level: entries, bytes, hits, misses, hit rate, evictions (and L2 errors,
        invalidations heard; semantic lookups and guard trips)."""
        l1 = self.exact.l1
        levels: dict[str, Any] = {
            "l1": {"entries": len(l1), "bytes": l1.size_bytes, **_counts(l1.stats)},
        }
        if self.exact.l2 is not None:
            l2 = self.exact.l2_stats
            levels["l2"] = {**_counts(l2), "errors": l2.errors, "invalidations": l2.invalidations}
        if self.semantic is not None:
            semantic = self.semantic.stats()
            levels["semantic"] = {
                "entries": semantic.entries,
                "lookups": semantic.lookups,
                "hits": semantic.hits,
                "hit_rate": semantic.hits / semantic.lookups if semantic.lookups else 0.0,
                "guard_trips": semantic.guard_trips,
                "guard_trips_by_rule": semantic.trips_by_rule,
                "embed_ms_p50": semantic.embed_ms_p50,
                "lookup_ms_p50": semantic.lookup_ms_p50,
            }
        return {"scope": self.config.scope, "levels": levels}

    async def clear(self, *, scope: str | None = None, model: str | None = None) -> int:
        removed = await self.exact.clear(scope=scope, model=model)
        if self.semantic is not None:
            self.semantic.clear()  # its entries point at exact keys that may be gone
        return removed


def _counts(stats: LevelStats) -> dict[str, Any]:
    lookups = stats.hits + stats.misses
    return {
        "hits": stats.hits,
        "misses": stats.misses,
        "hit_rate": stats.hits / lookups if lookups else 0.0,
        "evictions": stats.evictions,
    }


def _last_user_text(request: ChatRequest) -> str | None:
    last = request.messages[-1]
    if not isinstance(last, UserMessage):
        return None
    if isinstance(last.content, str):
        return last.content or None
    if all(isinstance(part, TextPart) for part in last.content):
        return " ".join(p.text for p in last.content if isinstance(p, TextPart)) or None
    return None  # images or audio: a text match says nothing about them


def _context_fingerprint(request: ChatRequest) -> str:
    """Everything but the last user turn must match exactly for a semantic hit."""
    context = msgspec.structs.replace(
        request,
        messages=request.messages[:-1],
        stream=None,
        stream_options=None,
        user=None,
        metadata=None,
    )
    return hashlib.blake2b(_json.encode(context), digest_size=16).hexdigest()
