"""FHIR date, dateTime and instant values as the eligibility reader takes them.

A partial date (``YYYY`` or ``YYYY-MM``) is read as the middle of the year or the first of the
month (:func:`date_of`); the date of a resource is its effective[x], else ``issued``
(:func:`effective`), and its instant the same element's when it carries a time of day (UTC when
no zone is given).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["date_of", "effective", "effective_instant", "instant_of"]


def date_of(text: Any) -> date | None:
    if not isinstance(text, str) or len(text) < 4:
        return None
    try:
        if len(text) == 4:
            return date(int(text), 7, 1)
        if len(text) == 7:
            return date(int(text[:4]), int(text[5:7]), 1)
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def instant_of(text: Any) -> datetime | None:
    """The instant of a FHIR dateTime that has a time of day (UTC when no zone is given)."""
    if not isinstance(text, str) or len(text) <= 10:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def effective_instant(resource: Mapping[str, Any]) -> datetime | None:
    """The instant of the same element :func:`effective` takes the date from, if it has a time."""
    period = resource.get("effectivePeriod") or {}
    for text in (resource.get("effectiveDateTime"), resource.get("effectiveInstant"),
                 period.get("end"), period.get("start"), resource.get("issued")):
        if date_of(text) is not None:
            return instant_of(text)
    return None


def effective(resource: Mapping[str, Any]) -> date | None:
    period = resource.get("effectivePeriod") or {}
    for text in (resource.get("effectiveDateTime"), resource.get("effectiveInstant"),
                 period.get("end"), period.get("start"), resource.get("issued")):
        found = date_of(text)
        if found is not None:
            return found
    return None
