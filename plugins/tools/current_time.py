"""The ``current_time`` tool: the current date and time in an IANA time zone."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.call import Call
from gateway.plugin import Services

__all__ = ["CurrentTime", "CurrentTimeConfig"]


@dataclass(frozen=True, kw_only=True)
class CurrentTimeConfig:
    default_timezone: str = field(default="UTC", metadata={"help": "zone used when the model names none"})
    timeout: float = 1.0


class CurrentTime:
    """Tell the model what time it is, anywhere."""

    Config = CurrentTimeConfig
    name = "current_time"
    description = "The current date and time in an IANA time zone such as Europe/Paris or America/New_York (default UTC)."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "IANA time zone name", "maxLength": 64}},
        "additionalProperties": False,
    }

    def __init__(self, config: CurrentTimeConfig, services: Services, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        ZoneInfo(config.default_timezone)  # fail at start-up on a bad default, not at the first call
        self.cfg = config
        self.timeout = config.timeout
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))

    async def __call__(self, arguments: dict[str, Any], call: Call) -> dict[str, Any]:
        name = arguments.get("timezone") or self.cfg.default_timezone
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)") from None
        now = self._clock().astimezone(zone)
        offset = now.utcoffset() or dt.timedelta(0)
        return {
            "timezone": name, "iso": now.isoformat(timespec="seconds"), "date": now.date().isoformat(),
            "time": now.strftime("%H:%M:%S"), "weekday": now.strftime("%A"),
            "utc_offset": f"{'+' if offset >= dt.timedelta(0) else '-'}{abs(int(offset.total_seconds())) // 3600:02d}:{abs(int(offset.total_seconds())) % 3600 // 60:02d}",
        }
