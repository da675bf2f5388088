"""The log filter `serve()` installs: every part of a record a handler may write is scrubbed,
and the filter leaves with the gateway."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from stellara._secrets import SecretScrubber
from stellara.server.logs import SecretLogFilter, secrets_kept_out_of_logs

SECRET = "sk-config-secret-7Hq2ZmX9wLp4"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def collect() -> Iterator[Collect]:
    handler = Collect()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s %(who)s"))
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)


def test_log_filter_scrubs_message_arguments_extras_tracebacks_and_stacks(
    collect: Collect,
) -> None:
    logger = logging.getLogger("tests.logs")
    with secrets_kept_out_of_logs(SecretScrubber([SECRET])):
        logger.warning("key %s in %s", SECRET.upper(), "/x?token=abc", extra={"who": SECRET})
        try:
            raise ValueError(f"bad line GET /dashboard?key={SECRET[:16]}")
        except ValueError:
            logger.exception("parser failed", extra={"who": "-"}, stack_info=True)
    first, second = collect.records
    assert collect.lines[0] == "WARNING tests.logs key [redacted] in /x?token=[redacted] [redacted]"
    assert (first.levelno, first.name) == (logging.WARNING, "tests.logs")
    assert second.exc_info is None
    assert "ValueError: bad line GET /dashboard?key=[redacted]" in (second.exc_text or "")
    assert "ValueError" in collect.lines[1]
    assert all(SECRET[:12].lower() not in line.lower() for line in collect.lines)


def test_log_filter_leaves_with_the_gateway(collect: Collect) -> None:
    logger = logging.getLogger("tests.logs")
    with secrets_kept_out_of_logs(SecretScrubber([SECRET])):
        assert collect.filters
    assert not collect.filters
    logger.warning("after %s", SECRET, extra={"who": "-"})
    assert collect.lines[-1].endswith(f"after {SECRET} -")


def test_log_filter_passes_a_record_it_cannot_format_to_the_handler() -> None:
    bad = logging.makeLogRecord({"msg": "two %s %s", "args": ("args",)})
    assert SecretLogFilter(SecretScrubber([SECRET])).filter(bad)  # the handler reports it
    assert (bad.msg, bad.args) == ("two %s %s", ("args",))
