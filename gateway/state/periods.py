"""Calendar periods (UTC) for monthly quotas and daily/monthly budgets.

A period's counter key carries its id (``d20250131``, ``m202501``), so a new period
starts from zero without anyone resetting anything. Replicas derive the id from their
own clock; NTP-level skew only matters in the milliseconds around midnight UTC.
"""
from __future__ import annotations

import datetime as dt
from typing import NamedTuple

__all__ = ["Period", "period_of"]

_UTC = dt.timezone.utc


class Period(NamedTuple):
    name: str  # "day" | "month"
    id: str  # "d20250131" | "m202501"
    start_ms: int
    end_ms: int  # exclusive: when the next period starts (reset_at)


_cache: dict[tuple[str, int], Period] = {}


def period_of(name: str, now_s: float) -> Period:
    """The period containing ``now_s`` (epoch seconds). Cached per UTC day."""
    day = int(now_s // 86400)
    hit = _cache.get((name, day))
    if hit is not None:
        return hit
    d = dt.datetime.fromtimestamp(day * 86400, _UTC)
    if name == "day":
        start = d
        end = start + dt.timedelta(days=1)
        pid = f"d{start:%Y%m%d}"
    elif name == "month":
        start = d.replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        pid = f"m{start:%Y%m}"
    else:
        raise ValueError(f"unknown period {name!r} (day | month)")
    p = Period(name, pid, int(start.timestamp() * 1000), int(end.timestamp() * 1000))
    if len(_cache) > 64:
        _cache.clear()
    _cache[(name, day)] = p
    return p
