"""Ages (``90s``, ``30m``, ``2h``, ``7d``, ``2w``) and points in time as operators type them:
one parser for the CLI's ``--since``/``--older-than`` and the API's ``since``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "": 1}
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)", re.ASCII)  # ASCII: str.isdigit takes "²", which float() refuses
MAX_AGE = timedelta(days=365 * 100)


def parse_age(text: str) -> timedelta | None:
    """``90s``, ``30m``, ``2h``, ``7d``, ``2w`` or a number of seconds; None if it is none of them."""
    m = _AGE.fullmatch(text.strip().lower())
    if m is None:
        return None
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds > MAX_AGE.total_seconds():
        raise ValueError(f"{text!r} is more than 100 years")
    return timedelta(seconds=seconds)


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """An age ago or an ISO 8601 time (UTC unless it says otherwise); ValueError naming the text."""
    age = parse_age(text)
    if age is not None:
        return (now or datetime.now(UTC)) - age
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither an age like 30m, 2h, 7d nor an ISO 8601 time") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    # In UTC: Python takes offsets to ±23:59, PostgreSQL only to ±15:59 (a -23:11 answered 500).
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range") from None
