"""The shape of `stellara.yaml`. Unknown keys are errors everywhere.

Provider entries are validated by the settings model their `type` registers: a subclass of
`ProviderSettings` in the provider's folder, which the loader is handed (see
`stellara.assembly.config`), so a provider type can add keys of its own without central code
naming it.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from yarl import URL

from stellara.config.experiments import ExperimentConfig, FeedbackConfig

PublicModelName = Annotated[str, Field(min_length=1, max_length=256)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(StrictModel):
    """The HTTP listener, and how long it waits for slow or idle clients.

    Attributes:
        keepalive_timeout_s: An idle connection is closed after this many seconds; it also
            bounds how long a client may take to send a request's line and headers (from the
            connection's start, or the previous answer), so a slow sender cannot hold a
            connection. Longer than common proxies' 60 s, so a proxy never reuses a connection
            the gateway is closing. `stellara serve` applies it.
        body_read_timeout_s: A request body must arrive within this many seconds of its
            headers, else the answer is 408.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    master_key: SecretStr | None = None
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    access_log: bool = False
    master_key_model_calls: bool = False  # whether the master key may call models too
    keepalive_timeout_s: float = Field(default=75.0, gt=0, le=3600)
    body_read_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    # The request's header fields together (names, values, separators) may hold this many
    # bytes, else the answer is 431. `stellara serve` also has the HTTP parser refuse (400) a
    # request line or a single header longer than this, and more than 128 headers.
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    # A request's line and headers must all arrive within this many seconds of its first byte,
    # else the connection is closed, so a client trickling them cannot hold it. `stellara
    # serve` applies it.
    header_read_timeout_s: float = Field(default=10.0, gt=0, le=3600)


ProviderId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]


class ProviderSettings(StrictModel):
    """The config keys every provider entry accepts; a provider type may add its own."""

    id: ProviderId
    type: str
    api_key: SecretStr | None = None
    base_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=256, ge=1)
    # The model an active health probe asks (a 1-token answer); default: the first model any
    # public model routes to on this provider. `false` turns probes off for this provider.
    probe_model: str | bool | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        """An absolute http(s) URL with a host: anything else would fail every request (or
        reach somewhere unintended) instead of failing at start-up."""
        if value is None:
            return None
        try:
            url = URL(value)
            host = url.host
        except ValueError as exc:
            raise ValueError(f"not a URL ({exc})") from None
        if url.scheme not in ("http", "https") or not host:
            raise ValueError("must be an absolute http:// or https:// URL with a host")
        return value


class TargetConfig(StrictModel):
    provider: str
    model: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)  # for `strategy: weighted`


Strategy = Literal["performance", "cost", "round_robin", "weighted", "priority", "least_busy"]


class CostFloorConfig(StrictModel):
    """What a `strategy: cost` model's targets must meet to be chosen for their price: the
    cheapest target that meets it leads, and those that miss it follow, cheapest first, as
    fallbacks. A target is judged only once measured, so a new one is tried and measured.

    Attributes:
        p95_ms: The most a target's p95 latency may be, in milliseconds: of its last 100
            successful calls within 10 minutes (to the first chunk, for streams), once it has
            20 of them.
        metric: A feedback metric (declared under `feedback.metrics`) whose mean a target must
            reach; set with `min_mean`.
        min_mean: The least mean of `metric` a target may have.
        min_samples: Fewer feedback values of a target than this do not judge it.
    """

    p95_ms: float | None = Field(default=None, gt=0)
    metric: str | None = Field(default=None, min_length=1)
    min_mean: float | None = None
    min_samples: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.p95_ms is None and self.metric is None:
            raise ValueError("set p95_ms, or metric and min_mean, or both")
        if (self.metric is None) != (self.min_mean is None):
            raise ValueError("metric and min_mean are set together")
        return self


class ModelConfig(StrictModel):
    name: PublicModelName
    targets: list[TargetConfig] = Field(min_length=1)
    strategy: Strategy = "priority"  # the targets in the order written, healthy ones first
    fallbacks: list[str] = Field(default_factory=list)  # other public models, in order
    # A parameter the target's provider cannot honour: refused with a 400 (false), or not sent
    # and listed in `x-stellara-dropped-params` (true). Unset: the top-level setting.
    drop_unsupported_params: bool | None = None
    # With `strategy: cost` only: what the target it picks must meet (latency, feedback).
    cost_floor: CostFloorConfig | None = None

    @field_validator("cost_floor")
    @classmethod
    def _floor_needs_cost(
        cls, value: CostFloorConfig | None, info: ValidationInfo
    ) -> CostFloorConfig | None:
        strategy = info.data.get("strategy")  # absent when invalid: reported on its own
        if value is not None and strategy is not None and strategy != "cost":
            raise ValueError(f"only valid with `strategy: cost` (this model's is {strategy})")
        return value


class RetryConfig(StrictModel):
    max_attempts: int = Field(default=3, ge=1, le=10)  # per target, the first included
    base_delay_ms: float = Field(default=200.0, ge=0)
    max_delay_ms: float = Field(default=5000.0, ge=0)
    jitter: bool = True


class CircuitBreakerConfig(StrictModel):
    failure_threshold: int = Field(default=5, ge=1)
    window_s: float = Field(default=60.0, gt=0)
    open_s: float = Field(default=30.0, gt=0)
    half_open_requests: int = Field(default=1, ge=1)
    scope: Literal["provider", "target"] = "provider"


class HealthCheckConfig(StrictModel):
    interval_s: float = Field(default=30.0, gt=0)  # between active probes of each provider
    timeout_s: float = Field(default=5.0, gt=0)
    enabled: bool = True


class ResilienceConfig(StrictModel):
    timeout_s: float = Field(default=60.0, gt=0, le=3600)  # the whole request, every attempt
    fallback_message: str = "The assistant is temporarily unavailable. Please try again shortly."
    max_total_attempts: int = Field(default=6, ge=1, le=50)  # across targets and fallbacks
    retry: RetryConfig = Field(default_factory=RetryConfig)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    health_check: HealthCheckConfig = Field(default_factory=HealthCheckConfig)


class StateConfig(StrictModel):
    """Where limits and quotas live. `on_failure` decides what happens when the backend does
    not answer: `open` keeps serving, each process enforcing every limit on its own at
    `fallback_share` of its value until the backend answers again; `closed` refuses model
    calls with 503. With N gateway processes, `fallback_share: 1/N` keeps the deployment within
    the limits during an outage (the default, 1, lets N processes admit up to N times them)."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None  # required when backend is redis (a loader cross-check)
    on_failure: Literal["open", "closed"] = "open"
    fallback_share: float = Field(default=1.0, gt=0, le=1)


class UsageStoreConfig(StrictModel):
    """The SQL store of usage records and virtual keys.

    `url` is `sqlite:///path.db` (the default; relative to the working directory) or
    `postgresql://user:password@host/db`. Records are buffered in memory (at most
    `buffer_records`) and written in batches of up to `batch_records`, at least every
    `flush_interval_s`; when the database stays down longer than the buffer lasts, the oldest
    records are dropped and counted; on shutdown pending records are written, retried for at
    most `shutdown_flush_s`. `key_cache_ttl_s` is how long a process trusts a virtual
    key it looked up; changes made through the admin API apply at once on every process
    sharing the Redis state backend, and within this time otherwise.

    By default a gateway starts even when its database is down (requests need no SQL) and
    brings the schema up to date in the background. `required: true` makes start-up wait for
    the database and its schema (15 s at most) and fail with one line without them.
    """

    url: str = Field(default="sqlite:///stellara.db", min_length=1)
    required: bool = False
    log_content: bool = False  # store prompt and answer text with each record
    batch_records: int = Field(default=500, ge=1, le=10_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    buffer_records: int = Field(default=100_000, ge=100)
    key_cache_ttl_s: float = Field(default=5.0, ge=0, le=3600)
    shutdown_flush_s: float = Field(default=10.0, gt=0, le=600)  # retrying pending records

    @field_validator("url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        scheme = value.partition(":")[0].split("+")[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("use sqlite:///path.db or postgresql://user@host/db")
        return value


class RateLimitConfig(StrictModel):
    """Sliding-window limits: at most this much in any `window_s` seconds."""

    window_s: float = Field(default=60.0, gt=0)
    requests: int | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)


class BurstConfig(StrictModel):
    """A short window on requests, plus spike detection against the user's own rate.

    A spike is a burst-window request rate above `spike_factor` times the user's rate over
    the `rate` window, once the burst window holds `spike_min_requests` requests (so a first
    request after a quiet spell is never a spike). A spike blocks the user for `window_s`.
    """

    window_s: float = Field(default=1.0, gt=0)
    requests: int | None = Field(default=None, ge=1)
    spike_factor: float | None = Field(default=None, gt=1)
    spike_min_requests: int = Field(default=3, ge=2)


class QuotaAmountsConfig(StrictModel):
    requests: int | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)


class SessionQuotaConfig(QuotaAmountsConfig):
    """Per `X-Session-Id`; a session ends after `idle_s` without a request."""

    idle_s: float = Field(default=1800.0, gt=0)


class QuotaConfig(StrictModel):
    """Calendar quotas (in `limits.timezone`) and per-session quotas."""

    daily: QuotaAmountsConfig | None = None
    monthly: QuotaAmountsConfig | None = None
    session: SessionQuotaConfig | None = None


class TierConfig(StrictModel):
    """One tier's limits. Every part is optional: what is absent is not limited.

    The same shape serves as a user's `overrides`, deep-merged onto the tier (a `null` in an
    override removes the tier's limit), which is why even `burst.requests` has no required key.
    `shadow: true` evaluates and reports every limit but never refuses a request.
    """

    rate: RateLimitConfig | None = None
    burst: BurstConfig | None = None
    quota: QuotaConfig | None = None
    # Model calls one user (or, in a key's own limits, one key) may have in flight at once on
    # one gateway process; more are refused at once with 429 `concurrency_limit_exceeded`.
    concurrency: int | None = Field(default=None, ge=1)
    shadow: bool = False


class UserLimitsConfig(StrictModel):
    tier: str | None = None
    overrides: TierConfig | None = None


def _valid_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a directory name
        message = f"unknown time zone {name!r} (use an IANA name like Europe/Paris)"
        raise ValueError(message) from exc
    return name


class LimitsConfig(StrictModel):
    """Rate limits, burst detection and quotas per tier.

    A user's tier is `users.<user>.tier`, else their key's `tier`, else `default_tier`. The
    tier name `default` may be left undefined: users in it are then not limited at all, which
    is also what an empty `tiers` means.

    `default_max_tokens_reserve` is what a request without `max_tokens` reserves for its answer
    until the real usage settles it, when its user has no recent answer from the model to go
    by (then the length of those answers is reserved); never more than the user's tightest
    token limit holds beside the prompt. Reserving the model's full output limit instead
    (16k-128k tokens) would refuse every such request from a user with a small token budget,
    though answers are rarely that long; too small a reserve is corrected by the settle, so it
    only lets a user overshoot a budget by one answer.
    """

    tiers: dict[str, TierConfig] = Field(default_factory=dict)
    users: dict[str, UserLimitsConfig] = Field(default_factory=dict)
    default_tier: str = "default"
    timezone: str = "UTC"
    warn_at: float = Field(default=0.8, gt=0, le=1)
    default_max_tokens_reserve: int = Field(default=1024, ge=0)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return _valid_timezone(value)


class KeyConfig(StrictModel):
    key: SecretStr
    user: str = Field(min_length=1)
    models: list[str] | None = None
    tier: str | None = None  # used when `limits.users.<user>.tier` does not name one
    team: str | None = None  # the cache scope when `cache.scope: team`
    # Whether requests with this key may pin an experiment's variant or opt out of it
    # (`x-stellara-variant`); a permission only the config or the master key grants.
    may_pin_variants: bool = False

    @field_validator("key")
    @classmethod
    def _key_long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 8:
            raise ValueError("a key must be at least 8 characters long")
        return value


class L1CacheConfig(StrictModel):
    max_entries: int = Field(default=10_000, ge=1)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    ttl_s: float = Field(default=3600.0, gt=0)


class L2CacheConfig(StrictModel):
    """The shared level; it exists only with `state.backend: redis`."""

    enabled: bool = True
    ttl_s: float = Field(default=86_400.0, gt=0)


class SemanticCacheConfig(StrictModel):
    enabled: bool = False
    # Chosen on the shipped evaluation set (benchmarks/semantic.py): no false hit on the hard
    # negatives with ~78 % recall on paraphrases.
    threshold: float = Field(default=0.85, gt=0, le=1)
    max_entries: int = Field(default=100_000, ge=1)


class CacheConfig(StrictModel):
    """Present → answers are cached; absent → nothing is (sampling makes answers vary, so
    caching is a choice the operator makes)."""

    l1: L1CacheConfig = Field(default_factory=L1CacheConfig)
    l2: L2CacheConfig = Field(default_factory=L2CacheConfig)
    scope: Literal["user", "team", "global"] = "user"
    stale_ttl_s: float = Field(default=86_400.0, ge=0)
    # Above this temperature (or with n > 1) answers are meant to vary: bypass the cache.
    max_temperature: float = Field(default=1.0, ge=0, le=2)
    semantic: SemanticCacheConfig = Field(default_factory=SemanticCacheConfig)


class ResponsesConfig(StrictModel):
    """The Responses API's stored responses: with `store: true` in a request (OpenAI's
    default) the response, its input and the conversation so far are kept in the state
    backend, so `GET /v1/responses/{id}` and `previous_response_id` work on every gateway
    process sharing it (with `state.backend: memory`, in this process only, and lost on
    restart).

    Attributes:
        store: `false` stores nothing, whatever a request asks; its `store` is then answered
            `false`.
        retention_s: How long a response stays stored after it was answered (OpenAI keeps
            them 30 days); then reading or continuing it is a 404.
        max_stored_bytes: The most that every stored response together may hold (each
            counted by its id, user and encoded content); storing past it evicts the oldest
            first. A response larger than this on its own is refused with 413. With the
            memory backend it is held in the process's memory.
    """

    store: bool = True
    # At most a year: a longer one is likelier milliseconds written for seconds than meant.
    retention_s: float = Field(default=2_592_000.0, gt=0, le=366 * 86_400)
    # At least a mebibyte: a smaller cap would refuse ordinary conversations outright.
    max_stored_bytes: int = Field(default=1024**3, ge=1024**2, le=1024**4)


class CatalogEntryConfig(StrictModel):
    """A `catalog:` entry: overrides the shipped entry for `provider_model`, or adds one.

    Without `provider_type` it applies to that model on every provider type. Fields left out
    keep the shipped entry's values (the cached-input and cache-write prices keep their ratio
    to the input price); for a new model they are unknown, and cached input and cache writes
    cost the same as input.
    """

    provider_model: str = Field(min_length=1)
    provider_type: str | None = None
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_per_mtok: float | None = Field(default=None, ge=0)
    context_window: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, ge=0)
    capabilities: list[Literal["tools", "vision", "json_mode", "embeddings"]] | None = None


class WebhookConfig(StrictModel):
    """An HTTP endpoint that receives events as JSON arrays, in batches.

    Each POST carries `X-Stellara-Signature: sha256=<hex HMAC of timestamp.body>` when a
    `secret` is set (and `X-Stellara-Timestamp`); failed batches are retried with backoff up
    to `max_retries` times; at most `queue_max` events wait, the oldest dropped first."""

    url: str = Field(pattern=r"^https?://")
    secret: SecretStr | None = None
    events: list[str] = Field(default_factory=lambda: ["*"], min_length=1)  # names, or "*"
    batch_max: int = Field(default=100, ge=1, le=10_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=300)
    queue_max: int = Field(default=10_000, ge=1)
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    max_retries: int = Field(default=5, ge=0, le=100)
    headers: dict[str, str] = Field(default_factory=dict)


class EventLogConfig(StrictModel):
    """Events as one JSON line each on the `stellara.events` logger."""

    enabled: bool = False
    events: list[str] = Field(default_factory=lambda: ["*"], min_length=1)


class TracingConfig(StrictModel):
    """OpenTelemetry: a span per request and one per attempt. `exporter: none` records spans
    for a tracer provider the host process set up (e.g. `opentelemetry-instrument`)."""

    enabled: bool = False
    service_name: str = "stellara"
    exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str | None = None  # e.g. http://127.0.0.1:4318/v1/traces


class TelemetryConfig(StrictModel):
    """Metrics, event sinks and tracing."""

    metrics: bool = True  # serve GET /metrics
    log_events: EventLogConfig = Field(default_factory=EventLogConfig)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    redis_events: bool = True  # publish every event on `<prefix>:events` when state is redis
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    # How often each process shares its monitoring stats through Redis (state: redis).
    stats_interval_s: float = Field(default=2.0, gt=0, le=60)


class StellaraConfig(StrictModel):
    server: ServerConfig = Field(default_factory=ServerConfig)
    providers: list[ProviderSettings] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    # What to do with a request parameter a target's provider cannot honour (see
    # docs/reference/parameters.md): refuse it with a 400 (false), or drop it and say so in
    # `x-stellara-dropped-params` (true). A model entry may set its own.
    drop_unsupported_params: bool = False
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    keys: list[KeyConfig] = Field(default_factory=list)
    usage_store: UsageStoreConfig = Field(default_factory=UsageStoreConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    catalog: list[CatalogEntryConfig] = Field(default_factory=list)
    cache: CacheConfig | None = None
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)
    experiments: list[ExperimentConfig] = Field(default_factory=list)
    # How often each process reloads the experiments table (changes made through the admin
    # API on another process) and adaptive allocations; each reload is one SQL query.
    experiments_refresh_s: float = Field(default=2.0, gt=0, le=3600)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
