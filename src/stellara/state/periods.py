"""Calendar arithmetic shared by the backends: which quota period `now` falls in, and its end."""

from __future__ import annotations

import calendar
import math
from datetime import UTC, datetime

DAY_S = 86_400


def period_bounds(period: str, now: float, utc_offset_s: int) -> tuple[str, float]:
    """The key of the daily or monthly period containing `now` and when it ends (epoch s).

    The zone's midnight is UTC midnight minus its offset, so a zone at UTC+2 starts its day at
    22:00 UTC the evening before.
    """
    local = now + utc_offset_s
    if period == "daily":
        day = math.floor(local / DAY_S)
        return f"d{day}", (day + 1) * DAY_S - utc_offset_s
    moment = datetime.fromtimestamp(local, UTC)
    days_in_month = calendar.monthrange(moment.year, moment.month)[1]
    month_start = datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()
    return f"m{moment.year:04d}{moment.month:02d}", month_start + days_in_month * DAY_S - (
        utc_offset_s
    )
