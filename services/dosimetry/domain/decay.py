"""Radioactive decay between calibration and treatment: A(t) = A0·2^(−t/T½).

t = treatment − calibration is signed: resin vials are routinely implanted before their
calibration time (calibrated for the evening of the treatment day), when the vial holds more than
its calibrated activity; t < 0 then gives A_cal < A_treatment. A decay factor that under- or
overflows double precision (many decades of half-lives) is refused, never divided by.
"""

from __future__ import annotations

import math
from datetime import datetime

from services.dosimetry.domain.constants import Y90_HALF_LIFE_H
from services.dosimetry.domain.errors import DosimetryInputError

__all__ = ["activity_at_calibration_gbq", "decay_factor", "decayed_activity_gbq", "elapsed_h"]


def decay_factor(elapsed_hours: float, half_life_h: float = Y90_HALF_LIFE_H) -> float:
    """Fraction of the activity left after ``elapsed_hours``: 2^(−t/T½)."""
    if not math.isfinite(elapsed_hours):
        raise DosimetryInputError("treatment_time", "elapsed time is not finite")
    if not (half_life_h > 0 and math.isfinite(half_life_h)):
        raise DosimetryInputError("half_life_h", f"half-life must be positive, got {half_life_h}")
    try:
        factor = float(2.0 ** (-elapsed_hours / half_life_h))
    except OverflowError:
        factor = math.inf
    if not (0 < factor < math.inf):
        raise DosimetryInputError("treatment_time", f"{elapsed_hours:g} h between calibration and treatment is "
                                                   f"{elapsed_hours / half_life_h:g} half-lives: no usable activity")
    return factor


def decayed_activity_gbq(activity_gbq: float, elapsed_hours: float, half_life_h: float = Y90_HALF_LIFE_H) -> float:
    """Activity after ``elapsed_hours`` of decay."""
    return activity_gbq * decay_factor(elapsed_hours, half_life_h)


def elapsed_h(calibration_time: datetime, treatment_time: datetime) -> float:
    """Signed hours from calibration to treatment (negative when the vial is implanted before its
    calibration time, see the module doc).

    Both datetimes must carry a time zone (FHIR dateTime with a time has one).
    """
    if calibration_time.tzinfo is None or treatment_time.tzinfo is None:
        raise DosimetryInputError("treatment_time", "calibration and treatment times need a time zone")
    return (treatment_time - calibration_time).total_seconds() / 3600.0


def activity_at_calibration_gbq(activity_at_treatment_gbq: float, elapsed_hours: float,
                                half_life_h: float = Y90_HALF_LIFE_H) -> float:
    """Activity to order at calibration so that ``activity_at_treatment_gbq`` is left at treatment:
    A_cal = A_treatment · 2^(t/T½) (t < 0: implanted before calibration, A_cal < A_treatment)."""
    activity = activity_at_treatment_gbq / decay_factor(elapsed_hours, half_life_h)
    if not math.isfinite(activity):
        raise DosimetryInputError("treatment_time", f"{elapsed_hours:g} h of decay leave no usable activity "
                                                   "at calibration")
    return activity
