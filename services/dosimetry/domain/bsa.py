"""Body surface area and the BSA method for resin microspheres.

- Mosteller RD, "Simplified calculation of body-surface area", N Engl J Med 317:1098 (1987):
  BSA = √(H·W/3600), H in cm, W in kg.
- DuBois D, DuBois EF, Arch Intern Med 17:863 (1916): BSA = 0.007184·W^0.425·H^0.725.
- BSA method (SIR-Spheres instructions for use; EANM 2022 §"Activity prescription"):
  A[GBq] = BSA − 0.2 + TI, TI = V_tumour / (V_tumour + V_normal liver); for a lobar or segmental
  treatment A is multiplied by V_target / V_liver (the perfused fraction).
"""

from __future__ import annotations

import math

from services.dosimetry.domain.checks import require_fraction, require_positive
from services.dosimetry.domain.errors import DosimetryInputError

__all__ = ["bsa_activity_gbq", "dubois_bsa_m2", "mosteller_bsa_m2", "tumor_involvement"]


def _positive(value: float, name: str) -> float:
    return require_positive(name, value)


def _fraction(value: float, name: str, *, allow_zero: bool = True) -> float:
    return require_fraction(name, value, positive=not allow_zero)


def mosteller_bsa_m2(height_cm: float, weight_kg: float) -> float:
    """Mosteller body surface area in m² (Mosteller 1987)."""
    _positive(height_cm, "height_cm")
    _positive(weight_kg, "weight_kg")
    return math.sqrt(height_cm * weight_kg / 3600.0)


def dubois_bsa_m2(height_cm: float, weight_kg: float) -> float:
    """DuBois body surface area in m² (DuBois & DuBois 1916)."""
    _positive(height_cm, "height_cm")
    _positive(weight_kg, "weight_kg")
    return float(0.007184 * weight_kg**0.425 * height_cm**0.725)


def tumor_involvement(tumor_volume_ml: float, liver_volume_ml: float) -> float:
    """TI = V_tumour / V_liver with ``liver_volume_ml`` the whole liver, tumour included
    (so V_tumour + V_normal = V_liver)."""
    _positive(liver_volume_ml, "liver_volume_ml")
    if not math.isfinite(tumor_volume_ml) or tumor_volume_ml < 0:
        raise DosimetryInputError("tumor_volume_ml", f"must not be negative, got {tumor_volume_ml}")
    if tumor_volume_ml > liver_volume_ml:
        raise DosimetryInputError(
            "tumor_volume_ml", f"tumour volume {tumor_volume_ml} mL exceeds the liver volume {liver_volume_ml} mL")
    return tumor_volume_ml / liver_volume_ml


def bsa_activity_gbq(bsa_m2: float, tumor_involvement_fraction: float, perfused_fraction: float = 1.0) -> float:
    """Resin BSA-method activity in GBq before any lung-shunt reduction.

    A = (BSA − 0.2 + TI) · perfused_fraction (whole liver: perfused_fraction = 1; lobar or
    segmental: V_target / V_liver).
    """
    _positive(bsa_m2, "bsa_m2")
    _fraction(tumor_involvement_fraction, "tumor_involvement")
    _fraction(perfused_fraction, "perfused_fraction", allow_zero=False)
    activity = (bsa_m2 - 0.2 + tumor_involvement_fraction) * perfused_fraction
    if activity <= 0:
        raise DosimetryInputError("bsa_m2", f"BSA {bsa_m2} m² gives no positive activity")
    return activity
