import pytest

from stellara._secrets import (
    INTERNAL_ADDRESS,
    REDACTED,
    SecretScrubber,
    UpstreamMessageScrubber,
    is_internal_host,
)

PROVIDER_KEY = "sk-provider-key-7Hq2ZmX9wLp4Rt8v"


def test_scrubber_masks_every_known_secret_longest_first() -> None:
    scrub = SecretScrubber(["sk-provider-key-0123456789", "sk-provider-key-0123456789-extra", "k"])
    text = "bad key sk-provider-key-0123456789-extra and sk-provider-key-0123456789; k stays"
    assert scrub(text) == f"bad key {REDACTED} and {REDACTED}; k stays"


@pytest.mark.parametrize(
    "copy",
    [
        pytest.param(PROVIDER_KEY, id="whole"),
        pytest.param(PROVIDER_KEY.upper(), id="upper-cased"),
        pytest.param(PROVIDER_KEY[:14], id="truncated"),
        pytest.param(PROVIDER_KEY[-12:], id="last-12"),
        pytest.param(PROVIDER_KEY[5:25].swapcase(), id="middle-swapcased"),
    ],
)
def test_scrubber_masks_known_secrets_in_any_case_and_fragments_of_twelve(copy: str) -> None:
    scrub = SecretScrubber([PROVIDER_KEY])
    cleaned = scrub(f"Incorrect API key provided: {copy}. Check your key.")
    assert cleaned == f"Incorrect API key provided: {REDACTED}. Check your key."


def test_scrubber_keeps_fragments_shorter_than_twelve_and_short_placeholders() -> None:
    scrub = SecretScrubber([PROVIDER_KEY, "none", "k"])
    text = f"prefix {PROVIDER_KEY[:11]} and none of k"
    assert scrub(text) == text


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("GET /dashboard?key=sk-master-1 HTTP/1.1", f"GET /dashboard?key={REDACTED} HTTP/1.1"),
        (
            "/x?a=1&API_KEY=abc&Token=t0k&x-api-key=z",
            f"/x?a=1&API_KEY={REDACTED}&Token={REDACTED}&x-api-key={REDACTED}",
        ),
        ("/login?next=%2Fd%3Fkey%3Dabc", f"/login?next=%2Fd%3Fkey%3D{REDACTED}"),
        ("Authorization: Bearer abc.def-123456", f"Authorization: Bearer {REDACTED}"),
        ('{"api_key": "v4lue", "model": "m"}', f'{{"api_key": "{REDACTED}", "model": "m"}}'),
        ("redis://:hunter2@cache:6379/0", f"redis://:{REDACTED}@cache:6379/0"),
        ("key sk-stl-AbCdEfGhIjKlMnOpQrStUvWx seen", f"key {REDACTED} seen"),
        ("sk-ant-api03-abcdefghijklmnopqrstuv", REDACTED),
        ("AIzaSyA1234567890abcdefghijklmnopqrstuv", REDACTED),
        ("id AKIAIOSFODNN7EXAMPLE", f"id {REDACTED}"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", f"jwt {REDACTED}"),
    ],
)
def test_scrubber_masks_credentials_written_into_text(text: str, cleaned: str) -> None:
    assert SecretScrubber([])(text) == cleaned


@pytest.mark.parametrize(
    "text",
    [
        "The model `gpt-4o-2024-08-06` does not exist or you do not have access to it.",
        "max_tokens=100 is too large; monkey=1; keyword=x; the bearer of bad news",
        "Request req_5d9e3a2f1c8b4e7a9f0d6c3b2a1e8f7d failed (req_011CSHoEeqs5C35K2UUqR7Fy).",
        "trace 123e4567-e89b-12d3-a456-426614174000 at 12:30:45, MAC 00:1a:2b:3c:4d:5e",
        "See https://api.openai.com/v1/models and https://platform.openai.com/docs (docs).",
        "This model's maximum context length is 128000 tokens; you asked for 130000.",
        "Invalid 'messages[0].content': expected a string of at most 1048576 characters.",
        "sk-learn is a library; the key prefix sk-stl-Ab3xY; resolve 8.8.8.8 or 2606:4700::1",
        "claude-3-5-sonnet-20241022 on us-central1; ft:gpt-4o-mini:acme:v2:9AbCdEf1",
    ],
)
def test_upstream_scrubber_keeps_ordinary_text(text: str) -> None:
    assert UpstreamMessageScrubber([PROVIDER_KEY])(text) == text


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("upstream http://10.0.3.7:8080/v1/chat failed.", "upstream {} failed."),
        ("(see http://localhost/x)", "(see {})"),
        ("host inference.svc.cluster.local:8443 and db.internal.", "host {} and {}."),
        ("at ip-10-0-0-1.ec2.internal, printer.local or api.svc", "at {}, {} or {}"),
        ("connect to [::1]:8000 or fe80::1%eth0 or fd00::2", "connect to {} or {} or {}"),
        (
            "from 192.168.1.20:5432, 172.16.0.1, 127.0.0.1 and 169.254.169.254",
            "from {}, {}, {} and {}",
        ),
        ("mapped ::ffff:10.0.0.1 and localhost:11434", "mapped {} and {}"),
    ],
)
def test_upstream_scrubber_masks_internal_addresses(text: str, cleaned: str) -> None:
    assert UpstreamMessageScrubber([])(text) == cleaned.replace("{}", INTERNAL_ADDRESS)


@pytest.mark.parametrize(
    "token",
    [
        "0123456789abcdef0123456789abcdef",  # 32 hex: an Azure key's shape
        "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    ],
)
def test_upstream_scrubber_masks_long_opaque_tokens(token: str) -> None:
    scrub = UpstreamMessageScrubber([])
    assert scrub(f"token {token} is not valid") == f"token {REDACTED} is not valid"
    assert SecretScrubber([])(f"token {token}") == f"token {token}"  # logs keep ids


def test_upstream_scrubber_keeps_the_useful_rest_of_a_leaky_message() -> None:
    scrub = UpstreamMessageScrubber([PROVIDER_KEY])
    message = (
        f"Invalid value for 'model' (key {PROVIDER_KEY.upper()[:20]}…, "
        "backend http://vllm-0.vllm.svc.cluster.local:8000/v1): use gpt-4o-2024-08-06."
    )
    assert scrub(message) == (
        f"Invalid value for 'model' (key {REDACTED}…, backend {INTERNAL_ADDRESS}): "
        "use gpt-4o-2024-08-06."
    )


@pytest.mark.parametrize(
    ("host", "internal"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("db.internal", True),
        ("x.svc.cluster.local", True),
        ("10.1.2.3", True),
        ("100.64.0.1", True),
        ("::1", True),
        ("api.openai.com", False),
        ("8.8.8.8", False),
        ("::ffff:8.8.8.8", False),
        ("internal", False),
    ],
)
def test_is_internal_host(host: str, internal: bool) -> None:
    assert is_internal_host(host) is internal
