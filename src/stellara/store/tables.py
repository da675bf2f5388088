"""The SQL schema (SQLAlchemy Core). Changes go through a migration in `migrations/versions`.

Times are epoch seconds (double precision): one representation on SQLite and PostgreSQL,
exact range filters, and days computed in SQL the same way on both.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants 64 bits for a log.
_ROW_ID = BigInteger().with_variant(Integer(), "sqlite")

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(40), primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),  # sha256 of the key, hex
    Column("prefix", String(24), nullable=False),  # the key's first characters, for people
    Column("user_id", String(256), nullable=False, index=True),
    Column("team", String(256)),
    Column("tier", String(64)),
    Column("models", JSON),  # allowed public model names; NULL: every model
    Column("limits", JSON),  # the key's own limits (TierConfig shape); NULL: none
    Column("name", String(256)),  # a label for people
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    # May pin an experiment's variant or opt out (`x-stellara-variant`); migration 0005.
    Column("may_pin_variants", Boolean, nullable=False, server_default=false()),
)

usage_records = Table(
    "usage_records",
    metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column(
        "request_id", String(64), nullable=False, unique=True
    ),  # makes retried writes idempotent
    Column("started_at", Float, nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("team", String(256)),
    Column("key_id", String(40)),
    Column("key_prefix", String(24)),
    Column("session_id", String(256)),
    Column("model", String(256), nullable=False),
    Column("provider", String(256)),
    Column("provider_model", String(256)),
    Column("attempts", Integer, nullable=False),
    Column("cache", String(16), nullable=False),  # miss | hit | semantic
    Column("stream", Boolean, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    # NULL in records written before the gateway counted them (migration 0004)
    Column("cache_write_tokens", Integer),
    Column("reasoning_tokens", Integer),
    Column("cost_usd", Float, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ttfb_ms", Float),
    Column("status", Integer, nullable=False),  # the HTTP status the client got
    Column("error_type", String(64)),
    Column("prompt", Text),  # only with usage_store.log_content
    Column("completion", Text),
    # The provider sent no usage (a stream cut short): tokens and cost are the gateway's count.
    Column("usage_estimated", Boolean, nullable=False, server_default=false()),
    # The inbound API's declared path (/v1/messages, …); NULL on records older than it.
    Column("endpoint", String(256)),
    # The experiment and variant that served the request; NULL outside experiments (0005).
    Column("experiment", String(64)),
    Column("variant", String(64)),
    Index("ix_usage_started_at", "started_at"),
    Index("ix_usage_user_started_at", "user_id", "started_at"),
    Index("ix_usage_model_started_at", "model", "started_at"),
    Index("ix_usage_experiment_variant", "experiment", "variant"),
)

# Experiments: those of the config (written at start-up, their status kept across restarts)
# and those made through the admin API. `definition` is the ExperimentConfig without status.
experiments = Table(
    "experiments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("definition", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # running | paused | stopped
    Column("winner", String(64)),
    Column("source", String(16), nullable=False),  # config | api
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# What clients reported on answers: one value per request and metric (a later report of the
# same metric replaces the earlier one).
feedback = Table(
    "feedback",
    metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("key_id", String(40)),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("request_id", "metric", name="uq_feedback_request_metric"),
)
