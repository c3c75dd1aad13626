"""The input checks every dosimetry formula shares, written once.

Each check names the field it checks in the domain's own words (``lung_shunt_fraction``,
``tumor_volume_ml``: the fields of :class:`~services.dosimetry.domain.planning.PlanInputs`, or
the argument of the formula); the FHIR boundary turns these into the contract's parameter
names.
"""

from __future__ import annotations

import math

from services.dosimetry.domain.errors import DosimetryInputError

__all__ = ["require_fraction", "require_positive"]


def require_positive(field: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` when it is a finite number above 0 (or at least 0 with ``allow_zero``)."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise DosimetryInputError(field, f"must be {'non-negative' if allow_zero else 'positive'}, got {value}")
    return value


def require_fraction(field: str, value: float, *, positive: bool = False, below_one: bool = False) -> float:
    """``value`` when it is a fraction 0-1; above 0 with ``positive``, below 1 with ``below_one``
    (a lung shunt of 1 leaves nothing for the liver; a vial residual of 1 delivers nothing)."""
    if not math.isfinite(value) or value < 0 or value > 1 or (positive and value == 0) or (below_one and value == 1):
        bounds = "above 0 and at most 1" if positive else "below 1" if below_one else "0-1"
        raise DosimetryInputError(field, f"must be a fraction between 0 and 1 ({bounds}), got {value}")
    return value
