"""Single-compartment MIRD model (glass microspheres; EANM 2022; TheraSphere instructions for use).

D = C·A·(1 − LSF)·(1 − R) / M, with M = V·ρ (ρ = 1.03 g/mL by default), R the fraction of the
activity left in the vial and tubing, LSF the lung shunt fraction (MIRD single compartment; EANM 2022). Solving for A
divides by (1 − LSF)·(1 − R).

Worked example (TheraSphere-style): A = 3 GBq, M = 1.5 kg, LSF = 10 %, R = 0, C = 50 →
D = 50·3·0.9/1.5 = 90 Gy.
"""

from __future__ import annotations

import math

from services.dosimetry.domain.checks import require_fraction, require_positive
from services.dosimetry.domain.errors import DosimetryInputError

__all__ = ["mass_kg", "single_compartment_activity_gbq", "single_compartment_dose_gy"]


def mass_kg(volume_ml: float, density_g_per_ml: float, field: str = "liver_volume_ml") -> float:
    """Mass in kg of ``volume_ml`` of tissue of ``density_g_per_ml``."""
    if not math.isfinite(volume_ml) or volume_ml <= 0:
        raise DosimetryInputError(field, f"must be a positive volume, got {volume_ml}")
    if not math.isfinite(density_g_per_ml) or density_g_per_ml <= 0:
        raise DosimetryInputError("tissue_density_g_per_ml", f"must be positive, got {density_g_per_ml}")
    return volume_ml * density_g_per_ml / 1000.0


def _check(lung_shunt_fraction: float, residual_fraction: float, dose_constant: float) -> None:
    require_fraction("lung_shunt_fraction", lung_shunt_fraction, below_one=True)
    require_fraction("vial_residual_fraction", residual_fraction, below_one=True)
    require_positive("dose_constant", dose_constant)


def single_compartment_dose_gy(activity_gbq: float, target_mass_kg: float, lung_shunt_fraction: float = 0.0,
                               residual_fraction: float = 0.0, dose_constant_gy_kg_per_gbq: float = 49.67) -> float:
    """Mean absorbed dose (Gy) of the perfused target: C·A·(1 − LSF)·(1 − R)/M."""
    _check(lung_shunt_fraction, residual_fraction, dose_constant_gy_kg_per_gbq)
    if not math.isfinite(target_mass_kg) or target_mass_kg <= 0:
        raise DosimetryInputError("liver_volume_ml", f"target mass must be positive, got {target_mass_kg}")
    return (dose_constant_gy_kg_per_gbq * activity_gbq * (1 - lung_shunt_fraction)
            * (1 - residual_fraction) / target_mass_kg)


def single_compartment_activity_gbq(target_dose_gy: float, target_mass_kg: float, lung_shunt_fraction: float = 0.0,
                                    residual_fraction: float = 0.0,
                                    dose_constant_gy_kg_per_gbq: float = 49.67) -> float:
    """Activity (GBq) giving ``target_dose_gy`` to the perfused target: D·M / (C·(1 − LSF)·(1 − R))."""
    _check(lung_shunt_fraction, residual_fraction, dose_constant_gy_kg_per_gbq)
    if not math.isfinite(target_dose_gy) or target_dose_gy <= 0:
        raise DosimetryInputError("target_dose_gy", f"must be positive, got {target_dose_gy}")
    if not math.isfinite(target_mass_kg) or target_mass_kg <= 0:
        raise DosimetryInputError("liver_volume_ml", f"target mass must be positive, got {target_mass_kg}")
    return (target_dose_gy * target_mass_kg
            / (dose_constant_gy_kg_per_gbq * (1 - lung_shunt_fraction) * (1 - residual_fraction)))
