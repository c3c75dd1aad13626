"""Radioactive decay between calibration and treatment: A(t) = A0·2^(−t/T½) (DOMAIN.md §3)."""

from __future__ import annotations

import math
from datetime import datetime

from services.dosimetry.domain.constants import Y90_HALF_LIFE_H
from services.dosimetry.domain.errors import DosimetryInputError

__all__ = ["activity_at_calibration_gbq", "decay_factor", "decayed_activity_gbq", "elapsed_h"]


def decay_factor(elapsed_hours: float, half_life_h: float = Y90_HALF_LIFE_H) -> float:
    """Fraction of the activity left after ``elapsed_hours``: 2^(−t/T½)."""
    if not math.isfinite(elapsed_hours):
        raise DosimetryInputError("treatmentTime", "elapsed time is not finite")
    if half_life_h <= 0:
        raise DosimetryInputError("halfLifeH", f"half-life must be positive, got {half_life_h}")
    return float(2.0 ** (-elapsed_hours / half_life_h))


def decayed_activity_gbq(activity_gbq: float, elapsed_hours: float, half_life_h: float = Y90_HALF_LIFE_H) -> float:
    """Activity after ``elapsed_hours`` of decay."""
    return activity_gbq * decay_factor(elapsed_hours, half_life_h)


def elapsed_h(calibration_time: datetime, treatment_time: datetime) -> float:
    """Hours from calibration to treatment; treatment before calibration is refused.

    Both datetimes must carry a time zone (FHIR dateTime with a time has one).
    """
    if calibration_time.tzinfo is None or treatment_time.tzinfo is None:
        raise DosimetryInputError("treatmentTime", "calibration and treatment times need a time zone")
    hours = (treatment_time - calibration_time).total_seconds() / 3600.0
    if hours < 0:
        raise DosimetryInputError(
            "treatmentTime", f"treatment {treatment_time.isoformat()} is before calibration {calibration_time.isoformat()}")
    return hours


def activity_at_calibration_gbq(activity_at_treatment_gbq: float, elapsed_hours: float,
                                half_life_h: float = Y90_HALF_LIFE_H) -> float:
    """Activity to order at calibration so that ``activity_at_treatment_gbq`` is left at treatment:
    A_cal = A_treatment · 2^(t/T½)."""
    return activity_at_treatment_gbq / decay_factor(elapsed_hours, half_life_h)
