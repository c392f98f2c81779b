"""Timestamps. The database keeps them as ISO 8601 text in UTC at a fixed width (milliseconds),
so that text order is time order in SQL; everything else gets aware datetimes."""
from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime) -> str:
    """`value` (aware) as the database writes it."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def now_iso() -> str:
    return iso(datetime.now(UTC))


def to_utc(value: datetime | str | None, naive: str = "utc") -> datetime | None:
    """A datetime or ISO text as an aware datetime in UTC; None for None, "" or text that is
    not a time. A value without a zone is taken as UTC (what the gallery stores and exports),
    or with naive="local" as the local time a person typed."""
    if value is None or value == "":
        return None
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.astimezone() if naive == "local" else value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
