"""gallery/times.py: timestamps stored as fixed-width UTC text, read back as aware datetimes."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from gallery.times import iso, now_iso, to_utc


def test_stored_text_is_utc_fixed_width_and_sorts_as_time():
    paris = timezone(timedelta(hours=1))
    a, b = datetime(2026, 12, 6, 23, 59, 59, 999000, tzinfo=paris), datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
    assert iso(a) == "2026-12-06T22:59:59.999+00:00"
    assert len(iso(a)) == len(iso(b)) == len(now_iso())
    assert (iso(a) < iso(b)) == (a < b)


def test_reading_back_any_form_gives_an_aware_utc_time_or_none():
    assert to_utc("2026-12-06T22:59:59.999+00:00") == datetime(2026, 12, 6, 22, 59, 59, 999000, tzinfo=UTC)
    assert to_utc("2026-12-06 10:00") == datetime(2026, 12, 6, 10, tzinfo=UTC)  # no zone: UTC, as stored
    local = to_utc("2026-12-06 10:00", naive="local")  # typed by a person: their local time
    assert local == datetime(2026, 12, 6, 10).astimezone().astimezone(UTC)
    assert to_utc(None) is None and to_utc("") is None and to_utc("yesterday") is None
