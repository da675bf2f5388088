"""Keeping secrets out of text that leaves the gateway.

- `SecretScrubber`, for log lines: known secrets (the config's keys), in any letter case and
  as any fragment of 12 characters or more, and credentials written into text (`key=…`,
  `Bearer …`, key-shaped tokens, a URL's password).
- `UpstreamMessageScrubber`, for a provider's error message before a tenant reads it: the
  same, plus internal addresses (private and loopback IPs, `localhost`, `*.internal`, …) and
  long opaque tokens, which a tenant has no use for and an attacker would.

Both recognise shapes: a secret that is not known and looks like ordinary words, or a copy of a
known one shorter than 12 characters, is not found. They are a safety net behind the rule that
secrets are never written into text in the first place.

Each pattern runs only when a cheap substring test says it could match: a log line is scrubbed in
microseconds.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Iterable
from urllib.parse import urlsplit

REDACTED = "[redacted]"
INTERNAL_ADDRESS = "[internal address]"
# Shorter values (`none`, `k`) are placeholders, and replacing them would mangle messages.
MIN_SECRET_CHARS = 8
# A copy of this many characters of a known secret is masked: long enough that ordinary text
# never matches a random key by chance, short enough that a truncated key is caught.
FRAGMENT_CHARS = 12
# A run of hex, or of base64url mixing cases and digits, this long is a key or a signature.
OPAQUE_CHARS = 32

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

# Names that hold credentials: key, api_key, x-api-key, access_token, client_secret, sig (an
# Azure SAS signature)… A name begins after a non-alphanumeric, or after a %-escape.
_CREDENTIAL_NAMES = (
    "apikey", "key", "token", "secret", "password", "passwd", "pwd", "signature", "sig", "auth",
    "credential", "credentials",
)  # fmt: skip
_NAME_START = r"(?:(?<![a-z0-9])|(?<=%[0-9a-f]{2}))"


def _after_name(matched: str) -> str:
    """Case-insensitive lookbehinds: the `matched` text follows a credential name. The patterns
    start with a literal and look behind for the name, which keeps them fast."""
    names = "|".join(f"(?<={_NAME_START}{name}{matched})" for name in _CREDENTIAL_NAMES)
    return f"(?i:{names})"


# (substrings one of which the text must hold, pattern, replacement): `name=value` (query
# strings, forms; `=` also %-escaped), `"name":"value"` (JSON), `Bearer <token>`, a URL's
# password, then vendors' key shapes: OpenAI and Anthropic (`sk-…`, `sk-ant-…`, Stellara's own
# `sk-stl-…`), Google (`AIza…`), AWS access key ids (`AKIA…`, `ASIA…`) and JSON Web Tokens.
_CREDENTIALS = (
    (
        ("=", "%3"),
        re.compile(rf"(=(?:{_after_name('=')})|%3[dD](?:{_after_name('%3d')}))[^&\s\"'<>;,]+"),
        rf"\1{REDACTED}",
    ),
    (('":',), re.compile(rf"(\"{_after_name(chr(34))}:\s*)\"[^\"]+\""), rf'\1"{REDACTED}"'),
    (
        ("earer", "EARER"),
        re.compile(r"(\b(?i:bearer)\s+)[A-Za-z0-9._~+/=\-]{8,}"),
        rf"\1{REDACTED}",
    ),
    (("://",), re.compile(r"(://[^\s/:@]*:)[^\s/@]+(?=@)"), rf"\1{REDACTED}"),
    (
        ("sk-", "AIza", "AKIA", "ASIA", "eyJ"),
        re.compile(
            r"sk-(?<![\w\-]sk-)[A-Za-z0-9_\-]{16,}"
            r"|AIza(?<![\w\-]AIza)[A-Za-z0-9_\-]{30,}"
            r"|A[KS]IA(?<![A-Z0-9]A[KS]IA)[A-Z0-9]{16}(?![A-Z0-9])"
            r"|eyJ(?<![\w\-]eyJ)[\w\-]{10,}\.[\w\-]{10,}\.[\w\-]*",
            re.ASCII,
        ),
        REDACTED,
    ),
)

# Hosts that only mean something inside the operator's network.
_INTERNAL_SUFFIXES = (".internal", ".local", ".svc", ".localhost", ".localdomain", ".home.arpa")
_PORT = r"(?::\d{1,5}(?!\d))?"
_URLS = re.compile(r"[a-z][a-z0-9+.\-]*://[^\s\"'<>]+", re.IGNORECASE)
_URL_PUNCTUATION = ".,;:!?"  # ends a sentence, not a URL
_OPENERS = {")": "(", "]": "["}
_BRACKETED_IP = re.compile(rf"\[([0-9a-fA-F:.]+(?:%[\w.\-]+)?)\]{_PORT}")
_IPV4 = re.compile(rf"(\d(?<![\w.:]\d)\d{{0,2}}(?:\.\d{{1,3}}){{3}})(?!\w|\.\d){_PORT}")
_IPV6_HINT = re.compile(r":[0-9a-fA-F]{0,4}:")
_IPV6 = re.compile(
    r"(?<![\w:.])((?:[0-9a-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9a-f]{1,4})?"
    r"(?:%[\w.\-]+)?)(?![\w:])",
    re.IGNORECASE,
)
_HOSTS = re.compile(
    r"(?<![\w.\-])(?:localhost|(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+"
    rf"(?:internal|local|svc|localhost|localdomain|home\.arpa))(?![\w\-]|\.[a-z0-9]){_PORT}",
    re.IGNORECASE,
)
_WORD_RUNS = re.compile(rf"[\w\-]{{{OPAQUE_CHARS},}}", re.ASCII)


class KnownSecrets:
    """Finds known secrets in text: whole or as a fragment of `FRAGMENT_CHARS` or more, in any
    letter case (a provider may echo a key truncated or upper-cased)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s.translate(_ASCII_LOWER) for s in secrets if len(s) >= MIN_SECRET_CHARS}
        long_values = [v for v in values if len(v) >= FRAGMENT_CHARS]
        # Every window of FRAGMENT_CHARS of every secret: a longer fragment is a chain of them.
        self._windows = {
            v[i : i + FRAGMENT_CHARS]
            for v in long_values
            for i in range(len(v) - FRAGMENT_CHARS + 1)
        }
        # Only runs of the characters secrets are made of can hold a fragment of one.
        alphabet = "".join(sorted({c for v in long_values for c in v + v.upper()}))
        self._runs = (
            re.compile(f"[{re.escape(alphabet)}]{{{FRAGMENT_CHARS},}}") if alphabet else None
        )
        short = sorted((v for v in values if len(v) < FRAGMENT_CHARS), key=len, reverse=True)
        self._short = re.compile("|".join(map(re.escape, short)), re.IGNORECASE) if short else None

    def redact(self, text: str) -> str:
        """`text` with every known secret, or fragment of one, replaced by `REDACTED`."""
        if self._short is not None:
            text = self._short.sub(REDACTED, text)
        if self._runs is not None:
            text = self._runs.sub(self._redact_run, text)
        return text

    def _redact_run(self, match: re.Match[str]) -> str:
        run = match.group()
        lowered = run.translate(_ASCII_LOWER)
        spans: list[list[int]] = []
        for start in range(len(run) - FRAGMENT_CHARS + 1):
            if lowered[start : start + FRAGMENT_CHARS] in self._windows:
                end = start + FRAGMENT_CHARS
                if spans and start <= spans[-1][1]:
                    spans[-1][1] = end
                else:
                    spans.append([start, end])
        if not spans:
            return run
        parts, done = [], 0
        for start, end in spans:
            parts += [run[done:start], REDACTED]
            done = end
        parts.append(run[done:])
        return "".join(parts)


def redact_credentials(text: str) -> str:
    """`text` without credentials written into it: the values of `key=`, `api_key=`,
    `token=`… (and their JSON form), `Bearer` tokens, URL passwords, and key-shaped tokens."""
    for hints, pattern, replacement in _CREDENTIALS:
        if any(hint in text for hint in hints):
            text = pattern.sub(replacement, text)
    return text


def is_internal_host(host: str) -> bool:
    """Whether `host` (a name or an IP address) names something inside a private network."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(_INTERNAL_SUFFIXES):
        return True
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global


def redact_internal_addresses(text: str) -> str:
    """`text` with internal hosts, IPs (with their port) and URLs pointing at them replaced by
    `INTERNAL_ADDRESS`; public ones stay."""
    if "://" in text:
        text = _URLS.sub(_internal_url, text)
    text = _IPV4.sub(_internal_ip, _BRACKETED_IP.sub(_internal_ip, text))
    if _IPV6_HINT.search(text):
        text = _IPV6.sub(_internal_ip, text)
    lowered = text.lower()
    if "localhost" in lowered or any(suffix in lowered for suffix in _INTERNAL_SUFFIXES):
        text = _HOSTS.sub(INTERNAL_ADDRESS, text)
    return text


def _internal_url(match: re.Match[str]) -> str:
    url = match.group()
    kept = _without_trailing_punctuation(url)
    try:
        host = urlsplit(kept).hostname
    except ValueError:
        return url
    return INTERNAL_ADDRESS + url[len(kept) :] if host and is_internal_host(host) else url


def _without_trailing_punctuation(url: str) -> str:
    """`url` without the punctuation of the sentence around it: a final `.`, or a `)` that
    closes a parenthesis opened before the URL."""
    while url:
        last = url[-1]
        opener = _OPENERS.get(last)
        is_unmatched = opener is not None and url.count(last) > url.count(opener)
        if last not in _URL_PUNCTUATION and not is_unmatched:
            break
        url = url[:-1]
    return url


def _internal_ip(match: re.Match[str]) -> str:
    address = match.group(1)  # without brackets or port
    has_digits = any(c in string.hexdigits for c in address)
    return INTERNAL_ADDRESS if has_digits and is_internal_host(address) else match.group()


def redact_opaque_tokens(text: str) -> str:
    """`text` without long opaque tokens: keys and signatures of vendors no pattern knows.
    Model names, request ids (`req_…`) and UUIDs are not such tokens."""
    return _WORD_RUNS.sub(_opaque, text)


def _opaque(match: re.Match[str]) -> str:
    run = match.group()
    if all(c in string.hexdigits for c in run):
        return REDACTED
    has_mixed_case = not run.islower() and not run.isupper()
    has_digits = any(c.isdigit() for c in run)
    return REDACTED if has_mixed_case and has_digits else run


class SecretScrubber:
    """Makes a log line safe to write: known secrets and credentials written into text go.

    Use it where text is kept for operators (logs); `UpstreamMessageScrubber` where text goes
    to a tenant.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._known = KnownSecrets(secrets)

    def __call__(self, text: str) -> str:
        return redact_credentials(self._known.redact(text))


class UpstreamMessageScrubber(SecretScrubber):
    """Makes a provider's error message safe to relay to a tenant, keeping what it says about
    the request: besides secrets and credentials, internal addresses and long opaque tokens
    (someone's key, a signed URL's signature) go too."""

    def __call__(self, text: str) -> str:
        return redact_opaque_tokens(redact_internal_addresses(super().__call__(text)))
