from __future__ import annotations

import pytest

from stellara.limits import format_duration, ratelimit_headers
from stellara.state.base import Admission, LimitState


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-1, "0s"),
        (0.25, "250ms"),
        (1, "1s"),
        (17.5, "17.5s"),
        (360, "6m0s"),
        (3723.25, "1h2m3.25s"),
    ],
)
def test_format_duration_like_openai(seconds, text):
    assert format_duration(seconds) == text


def test_ratelimit_headers_from_rate_windows_only():
    admission = Admission(
        True,
        None,
        0.0,
        (
            LimitState("rate:requests", 2, 3, 1, 1060.0),
            LimitState("rate:tokens", 120, 1000, 880, 1030.5),
            LimitState("quota:daily:requests", 2, 10, 8, 5000.0),
        ),
        1000.0,
    )
    assert ratelimit_headers(admission) == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "880",
        "x-ratelimit-reset-tokens": "30.5s",
    }


def test_ratelimit_headers_absent_without_rate_limits():
    admission = Admission(True, None, 0.0, (LimitState("quota:daily:requests", 1, 2, 1, 9),), 0)
    assert ratelimit_headers(admission) == {}
