"""What `stellara serve` writes to the logs: an access log without secrets, and a filter that
keeps secrets out of every log record, whoever logs it (Stellara, aiohttp, asyncio).

The documented sign-in link `/dashboard?key=<master key>`, a `?key=` some SDKs send, or a
parser error quoting a request line would otherwise put keys in the logs in clear.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from stellara._secrets import redact_credentials

Scrub = Callable[[str], str]

# A record's own attributes; any other is an `extra` a caller added, scrubbed too.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_EXCEPTIONS = logging.Formatter()


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request, `remote "METHOD /path?query HTTP/1.1" status bytes seconds
    "referer" "user agent"`, with secrets removed from the request line and the headers.

    aiohttp builds one per connection from the class: `using(scrub)` makes the class.
    """

    _scrub: Scrub = staticmethod(redact_credentials)

    @classmethod
    def using(cls, scrub: Scrub) -> type[RedactingAccessLogger]:
        """The access logger class whose lines go through `scrub`."""
        bound = type(cls.__name__, (cls,), {"_scrub": staticmethod(scrub)})
        return cast(type[RedactingAccessLogger], bound)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        version = request.version
        line = f"{request.method} {request.path_qs} HTTP/{version.major}.{version.minor}"
        headers = request.headers
        self.logger.info(
            '%s "%s" %d %d %.3fs "%s" "%s"',
            request.remote or "-",
            self._scrub(line),
            response.status,
            response.body_length,
            time,
            self._scrub(headers.get("Referer", "-")),
            self._scrub(headers.get("User-Agent", "-")),
        )


class SecretLogFilter(logging.Filter):
    """Scrubs a log record before a handler writes it: its message (formatted with its
    arguments), its traceback and stack, and string `extra` attributes; level and logger
    name are kept. Installed on handlers, so it sees the records of every logger."""

    def __init__(self, scrub: Scrub) -> None:
        super().__init__()
        self._scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - the handler reports a bad record; logging never raises
            return True
        if (clean := self._scrub(message)) != message:
            record.msg, record.args = clean, None
        self._scrub_traceback(record)
        if record.stack_info:
            record.stack_info = self._scrub(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, self._scrub(value))
        return True

    def _scrub_traceback(self, record: logging.LogRecord) -> None:
        """An exception's text may quote a secret (a parser error quotes the request line):
        when it does, the record keeps the scrubbed text in place of the exception."""
        if record.exc_info and record.exc_info[0] is not None:
            text = _EXCEPTIONS.formatException(record.exc_info)
        elif record.exc_text:
            text = record.exc_text
        else:
            return
        if (clean := self._scrub(text)) != text:
            record.exc_info, record.exc_text = None, clean


@contextmanager
def secrets_kept_out_of_logs(scrub: Scrub) -> Iterator[None]:
    """While inside, every log handler configured so far passes records through `scrub`
    first (configure logging before serving). Each use adds and removes its own filter, so
    gateways in one process come and go in any order."""
    log_filter = SecretLogFilter(scrub)
    handlers = _every_handler()
    for handler in handlers:
        handler.addFilter(log_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(log_filter)


def _every_handler() -> set[logging.Handler]:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {h for lg in loggers if isinstance(lg, logging.Logger) for h in lg.handlers}
    if logging.lastResort is not None:  # what writes when nothing is configured
        handlers.add(logging.lastResort)
    return handlers
