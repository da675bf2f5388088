"""Experiments for operators (master key): list, create, pause, stop, and the report.

- `GET /admin/experiments` → `{"object": "list", "data": [experiment, …]}`, oldest first.
  An experiment is its `definition` (the config's shape, without status and winner), what
  runs (`status`, `winner`), where it came from (`source`: config or api), each variant's
  current `shares` in percent (adaptive allocation's latest) and its `created_at` /
  `updated_at` (ISO-8601 UTC, and `*_epoch_s`).
- `POST /admin/experiments` body: an experiment in the config's shape → 201 the experiment.
  400 lists every problem (the shape, and names the config lacks: models, providers, feedback
  metrics); 409 when the id is taken or another experiment on the same model is not stopped.
- `GET /admin/experiments/{experiment_id}`; 404 for an unknown id.
- `PATCH /admin/experiments/{experiment_id}` body `{"status"?, "winner"?}`: `running`,
  `paused` or `stopped`. A winner is chosen when stopping: a non-null `winner` is refused (400)
  unless the experiment ends up stopped, and must name a variant. Stopping without one keeps
  the winner already chosen (none: everyone gets the control); `"winner": null` clears it;
  running or paused again clears it too (409 if another experiment on the model is not stopped).
- `GET /admin/experiments/{experiment_id}/report[?format=csv]`: the comparison
  (`experiments.report`); as CSV one row per variant, each metric's columns prefixed with its
  name.

A change is written to the store and applied by this process at once; the others load it
within `experiments.refresh_s` (their next reload of the table).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

import msgspec
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from stellara.config.experiments import (
    ExperimentConfig,
    ExperimentStatus,
    Slug,
)
from stellara.errors import (
    ConflictError,
    InvalidRequestError,
    RouteNotFoundError,
    StateBackendError,
    StoreUnavailableError,
)
from stellara.experiments.report import ExperimentReport, current_shares, experiment_report
from stellara.server.intake import decode_json_object, json_response, read_body, response_headers
from stellara.server.spec import Access, Call, Reply, Route
from stellara.server.spreadsheet import csv_lines
from stellara.store.admin import iso_utc
from stellara.store.experiments import ExperimentRecord

logger = logging.getLogger(__name__)

EXPERIMENTS = "/admin/experiments"
EXPERIMENT = "/admin/experiments/{experiment_id}"
REPORT = "/admin/experiments/{experiment_id}/report"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # the config's Slug, matched whole
M = TypeVar("M", bound=BaseModel)


class ExperimentView(msgspec.Struct, frozen=True):
    id: str
    model: str
    status: ExperimentStatus
    winner: str | None
    source: Literal["config", "api"]
    shares: dict[str, float]
    created_at: str
    created_at_epoch_s: float
    updated_at: str
    updated_at_epoch_s: float
    definition: dict[str, Any]


class ExperimentList(msgspec.Struct, frozen=True):
    object: Literal["list"]
    data: list[ExperimentView]


class ExperimentChange(BaseModel):
    """The body of `PATCH /admin/experiments/{experiment_id}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: ExperimentStatus | None = None
    winner: Slug | None = None


async def list_experiments(call: Call) -> web.StreamResponse:
    records = await call.runtime.experiment_store.list()
    data = [_view(call, record) for record in records]
    return _reply(call, ExperimentList("list", data))


async def create_experiment(call: Call) -> web.StreamResponse:
    runtime = call.runtime
    config = _valid(ExperimentConfig, decode_json_object(await read_body(call)))
    config_problems = runtime.experiments.problems(config, path="experiment")
    if config_problems:
        raise InvalidRequestError(_listed(config_problems), param=_first_path(config_problems))
    if config.status != "stopped":
        _refuse_second(await runtime.experiment_store.list(), config.id, config.model)
    record = await runtime.experiment_store.create(config, runtime.clock.time())
    await _apply(call)
    return _reply(call, _view(call, record), status=201)


async def get_experiment(call: Call) -> web.StreamResponse:
    return _reply(call, _view(call, await _found(call)))


async def update_experiment(call: Call) -> web.StreamResponse:
    runtime = call.runtime
    record = await _found(call)
    change = _valid(ExperimentChange, decode_json_object(await read_body(call)))
    status = change.status or record.status
    winner = _winner(record, change, status)
    if (status, winner) == (record.status, record.winner):
        return _reply(call, _view(call, record))  # nothing to change: updated_at stays
    if status != "stopped" and record.status == "stopped":
        records = await runtime.experiment_store.list()
        _refuse_second(records, record.config.id, record.config.model)
    changed = await runtime.experiment_store.set_status(
        record.config.id, status, winner, runtime.clock.time()
    )
    await _apply(call)
    return _reply(call, _view(call, changed or record))


async def report(call: Call) -> web.StreamResponse:
    form = call.request.query.get("format", "json")
    if form not in ("json", "csv"):
        raise InvalidRequestError("format must be json or csv.", param="format")
    record = await _found(call)
    runtime = call.runtime
    found = await experiment_report(
        record,
        runtime.experiments.get(record.config.id),
        runtime.config.feedback.metrics,
        runtime.experiment_report,
    )
    if form == "json":
        return _reply(call, found)
    headers = {
        **response_headers(call),
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="experiment-{found.experiment}.csv"',
    }
    return web.Response(body=csv_lines(_csv_table(found)), headers=headers)


def _csv_table(found: ExperimentReport) -> list[list[Any]]:
    """The report as rows: a header, then one row per variant (None: an empty cell)."""
    metrics = list(found.variants[0].metrics) if found.variants else []
    header = [
        "experiment", "status", "variant", "share", "requests", "errors", "error_rate",
        "latency_ms_p50", "latency_ms_p95", "ttfb_ms_p50", "ttfb_ms_p95",
        "prompt_tokens_per_request", "completion_tokens_per_request",
        "cost_usd", "cost_usd_per_request",
    ]  # fmt: skip
    for metric in metrics:
        header += [
            f"{metric}_{column}"
            for column in ("n", "mean", "ci95_lo", "ci95_hi", "diff", "diff_ci95_lo",
                           "diff_ci95_hi", "verdict")
        ]  # fmt: skip
    rows: list[list[Any]] = [header]
    for v in found.variants:
        row: list[Any] = [
            found.experiment, found.status, v.name, v.share, v.requests, v.errors, v.error_rate,
            v.latency_ms.p50, v.latency_ms.p95, v.ttfb_ms.p50, v.ttfb_ms.p95,
            v.tokens.prompt, v.tokens.completion, v.cost_usd, v.cost_usd_per_request,
        ]  # fmt: skip
        for metric in metrics:
            estimate = v.metrics[metric]
            versus = v.vs_control.get(metric)
            row += [estimate.n, estimate.mean, *(estimate.ci95 or (None, None))]
            if versus is None:  # the control
                row += [None, None, None, None]
            else:
                row += [versus.diff, *(versus.ci95 or (None, None)), versus.verdict]
        rows.append(row)
    return rows


def _winner(record: ExperimentRecord, change: ExperimentChange, status: str) -> str | None:
    """The winner after `change` (see the module docstring for the rules)."""
    if status != "stopped":
        if change.winner is not None:
            raise InvalidRequestError(
                "A winner is chosen when the experiment is stopped: send it with "
                '"status": "stopped".',
                param="winner",
            )
        return None
    if "winner" not in change.model_fields_set:
        return record.winner
    names = [v.name for v in record.config.variants]
    if change.winner is not None and change.winner not in names:
        raise InvalidRequestError(
            f"The experiment {record.config.id!r} has no variant {change.winner!r} "
            f"(variants: {', '.join(names)}).",
            param="winner",
        )
    return change.winner


def _refuse_second(records: Iterable[ExperimentRecord], experiment_id: str, model: str) -> None:
    """409 when an experiment other than `experiment_id` on `model` is not stopped: a
    request can be in only one experiment."""
    for other in records:
        if other.config.id == experiment_id or other.config.model != model:
            continue
        if other.status != "stopped":
            raise ConflictError(
                f"The experiment {other.config.id!r} runs on the model {model!r} "
                f"({other.status}); stop it first.",
                param="model",
            )


async def _apply(call: Call) -> None:
    """Run what the store now holds on this process; should the reload fail, the change is
    stored all the same and the periodic reload applies it."""
    try:
        await call.runtime.experiments.refresh()
    except (StoreUnavailableError, StateBackendError) as exc:
        logger.warning("experiments: the change is stored, not yet applied here: %s", exc)


async def _found(call: Call) -> ExperimentRecord:
    experiment_id = call.request.match_info["experiment_id"]
    # Other ids name nothing stored; some (with NUL) would fail in PostgreSQL.
    record = None
    if _ID.fullmatch(experiment_id):
        record = await call.runtime.experiment_store.get(experiment_id)
    if record is None:
        raise RouteNotFoundError(
            f"No experiment with id {experiment_id!r}.", code="experiment_not_found"
        )
    return record


def _view(call: Call, record: ExperimentRecord) -> ExperimentView:
    config = record.config
    live = call.runtime.experiments.get(config.id)
    return ExperimentView(
        id=config.id,
        model=config.model,
        status=record.status,
        winner=record.winner,
        source=record.source,
        shares=current_shares(record, live),
        created_at=iso_utc(record.created_at),
        created_at_epoch_s=record.created_at,
        updated_at=iso_utc(record.updated_at),
        updated_at_epoch_s=record.updated_at,
        definition=config.model_dump(mode="json", exclude_none=True, exclude={"status", "winner"}),
    )


def _valid(model: type[M], body: dict[str, Any]) -> M:
    """`body` as `model`, or a 400 listing every problem with its path."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = [f"{_path(error['loc'])}: {error['msg']}" for error in exc.errors()]
        raise InvalidRequestError(_listed(problems), param=_first_path(problems)) from exc


def _path(location: Iterable[int | str]) -> str:
    """`variants[0].share` from pydantic's `('variants', 0, 'share')`."""
    out = ""
    for part in location:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "body"


def _listed(problems: list[str]) -> str:
    return "Invalid experiment: " + "; ".join(problems) + "."


def _first_path(problems: list[str]) -> str | None:
    path = problems[0].split(":", 1)[0] if problems else ""
    return path if path and path != "body" else None


def _reply(call: Call, body: msgspec.Struct, *, status: int = 200) -> web.Response:
    return json_response(call, msgspec.to_builtins(body), status=status)


def _inlined(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A pydantic model's JSON schema with its `$defs` put in place of their references, so it
    stands alone inside the OpenAPI document (where `#/$defs/…` would point nowhere), and
    without the titles and docstrings pydantic adds (written for this code's readers)."""
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref", "")
            if reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {
                k: resolve(v)
                for k, v in node.items()
                if k != "$defs" and not (k in _PROSE and isinstance(v, str))
            }
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


_PROSE = ("title", "description")
_STORE = {503: "The SQL store is unavailable"}
_MISSING = {**_STORE, 404: "No such experiment"}
_EXAMPLE = {
    "id": "cheap-vs-smart",
    "model": "smart",
    "variants": [
        {"name": "control", "share": 50},
        {"name": "mini", "share": 50, "targets": [{"provider": "openai", "model": "gpt-4o-mini"}]},
    ],
}
ROUTES = (
    Route(
        "GET",
        EXPERIMENTS,
        list_experiments,
        Access.MASTER,
        "Experiments: what runs, where from, current shares",
        Reply("Experiments, oldest first", ExperimentList),
        errors=_STORE,
    ),
    Route(
        "POST",
        EXPERIMENTS,
        create_experiment,
        Access.MASTER,
        "Start an experiment (the config's shape); every process runs it within refresh_s",
        Reply("The experiment", ExperimentView, status=201),
        body=_inlined(ExperimentConfig.model_json_schema()),
        example=_EXAMPLE,
        errors={**_STORE, 409: "The id is taken, or another experiment runs on the model"},
    ),
    Route(
        "GET",
        EXPERIMENT,
        get_experiment,
        Access.MASTER,
        "One experiment",
        Reply("The experiment", ExperimentView),
        errors=_MISSING,
    ),
    Route(
        "PATCH",
        EXPERIMENT,
        update_experiment,
        Access.MASTER,
        "Pause, resume or stop an experiment; a winner is chosen when stopping",
        Reply("The experiment", ExperimentView),
        body=_inlined(ExperimentChange.model_json_schema()),
        errors={**_MISSING, 409: "Another experiment runs on the model"},
    ),
    Route(
        "GET",
        REPORT,
        report,
        Access.MASTER,
        "Per variant: requests, errors, latency, tokens, cost, feedback metrics against the "
        "control (JSON, or CSV with format=csv)",
        Reply("The report", ExperimentReport),
        query=("format",),
        errors={**_MISSING, 400: "format is neither json nor csv"},
    ),
)
