"""DICOM dates and times (DA, TM, DT; PS3.5 6.2) to datetimes, with their zone when known.

A DT may end with its own offset from UTC (``&ZZXX``, e.g. ``20240305093000+0100``); every
other date and time of an instance is in the zone its TimezoneOffsetFromUTC (0008,0201) gives
(PS3.3 C.12.1.1.8). When the instance has that attribute, :func:`parse_dicom_datetime` returns
the instant as an aware **UTC** datetime (each value's own offset first, else the instance's);
without it the zone is unknown, all values are taken as the scanner's local clock, and any DT
offset is ignored (they cannot be mixed with zone-less times). Either way, the values of one
instance are on one time base, which is what decay correction needs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pydicom.dataset import Dataset

__all__ = ["instance_utc_offset", "parse_dicom_datetime", "parse_utc_offset"]

_OFFSET = re.compile(r"^([+-])(\d{2})(\d{2})$")
_DT = re.compile(r"^(\d{8,14})(?:\.(\d{1,6}))?([+-]\d{4})?$")


def parse_utc_offset(text: object) -> timedelta | None:
    """``+HHMM`` / ``-HHMM`` → the offset from UTC; None when absent or malformed."""
    match = _OFFSET.match(str(text or "").strip())
    if not match:
        return None
    sign, hours, minutes = match.groups()
    if int(hours) > 14 or int(minutes) >= 60:
        return None
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    return -offset if sign == "-" else offset


def instance_utc_offset(ds: Dataset) -> timedelta | None:
    """The instance's TimezoneOffsetFromUTC (0008,0201), when present and well formed."""
    return parse_utc_offset(ds.get("TimezoneOffsetFromUTC"))


def parse_dicom_datetime(date: str | None, time: str | None = None, *, require_time: bool = False,
                         utc_offset: timedelta | None = None) -> datetime | None:
    """DICOM DA + TM (or one DT) to a naive datetime; None when absent or malformed.

    With ``utc_offset`` (the instance's TimezoneOffsetFromUTC) the result is aware, in UTC (a
    DT's own offset wins over it); without, naive local time as written. A date whose time is missing
    (``time`` absent with a DA, or a DT of 8 digits) is midnight unless ``require_time``; the
    decay correction asks for the time, since midnight would be a silently wrong instant.
    """
    if not date:
        return None
    text = str(date).strip()
    if time:
        text = text[:8] + str(time).strip()
    match = _DT.match(text)
    if not match:
        return None
    digits, frac, own_offset = match.groups()
    if require_time and len(digits) < 12:
        return None
    fmt = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}.get(len(digits))
    if fmt is None:
        return None
    try:
        value = datetime.strptime(digits, fmt)
    except ValueError:
        return None
    if frac:
        value += timedelta(microseconds=int(frac.ljust(6, "0")))
    if utc_offset is None:
        return value
    offset = parse_utc_offset(own_offset) if own_offset else None
    return (value - (offset if offset is not None else utc_offset)).replace(tzinfo=UTC)
