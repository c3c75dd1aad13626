"""Biochemical response: tumour markers beside, never inside, the imaging category.

Elf et al. (randomised radioembolisation versus bland embolisation in SI-NET) reported chromogranin A (serum) and 5-HIAA (24 h urine) as the percentage
change from the pre-treatment value at 3 and 6 months; there is no standard cut-off, so the
threshold is a setting (default 50 %, a decrease commonly called a biochemical response in NET
series, e.g. ENETS 2009 guidance on follow-up). Each value is compared with the baseline (the
last value on or before the imaging baseline, else the first value) and with the nadir (the
lowest value before it, baseline included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from services.response.domain.model import MarkerValue
from services.response.domain.result import percent_change

__all__ = [
    "BIOCHEMICAL_PROGRESSION",
    "BIOCHEMICAL_RESPONSE",
    "BIOCHEMICAL_STABLE",
    "DEFAULT_THRESHOLD_PERCENT",
    "MarkerResponse",
    "biochemical_responses",
]

BIOCHEMICAL_RESPONSE = "biochemical-response"
BIOCHEMICAL_STABLE = "biochemical-stable"
BIOCHEMICAL_PROGRESSION = "biochemical-progression"
DEFAULT_THRESHOLD_PERCENT = Decimal(50)


@dataclass(frozen=True)
class MarkerResponse:
    marker: str
    when: date
    value: Decimal
    unit: str
    baseline_value: Decimal
    baseline_date: date
    nadir_value: Decimal
    percent_vs_baseline: Decimal | None
    percent_vs_nadir: Decimal | None
    category: str
    source: str = ""


def _category(percent: Decimal | None, threshold: Decimal) -> str:
    if percent is None:
        return BIOCHEMICAL_STABLE
    if percent <= -threshold:
        return BIOCHEMICAL_RESPONSE
    if percent >= threshold:
        return BIOCHEMICAL_PROGRESSION
    return BIOCHEMICAL_STABLE


def biochemical_responses(values: Sequence[MarkerValue], imaging_baseline: date,
                          threshold_percent: Decimal = DEFAULT_THRESHOLD_PERCENT) -> list[MarkerResponse]:
    """% change of every marker value after the marker baseline, versus baseline and nadir.

    A change of at least ``threshold_percent`` down is a response, up a progression. Values of
    one marker must share one unit (the caller converts them).
    """
    out: list[MarkerResponse] = []
    by_marker: dict[str, list[MarkerValue]] = {}
    for v in values:
        by_marker.setdefault(v.marker, []).append(v)
    for marker, items in sorted(by_marker.items()):
        items.sort(key=lambda v: v.when)
        before = [v for v in items if v.when <= imaging_baseline]
        base = before[-1] if before else items[0]
        nadir = base.value
        for v in items:
            if v.when <= base.when:
                continue
            pct_base = percent_change(v.value, base.value)
            out.append(MarkerResponse(
                marker=marker, when=v.when, value=v.value, unit=v.unit,
                baseline_value=base.value, baseline_date=base.when, nadir_value=nadir,
                percent_vs_baseline=pct_base, percent_vs_nadir=percent_change(v.value, nadir),
                category=_category(pct_base, threshold_percent), source=v.source))
            nadir = min(nadir, v.value)
    return out
