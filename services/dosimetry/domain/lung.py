"""Lung shunt bands and lung absorbed dose.

- Lung-shunt bands of the resin BSA method (SIR-Spheres instructions for use):
  LSF < 10 %: no reduction; 10 % ≤ LSF < 15 %: reduce by 20 %; 15 % ≤ LSF ≤ 20 %: reduce by 40 %;
  LSF > 20 %: contraindicated. Band edges, stated here because the label gives ranges only:
  exactly 10 % and exactly 15 % belong to the higher band; exactly 20 % is still treatable with
  −40 %; anything above 20 % is contraindicated.
- Lung dose (EANM 2022): D_lung = C·A·LSF / M_lung, M_lung = 1 kg by default.
  Limits: 30 Gy per treatment, 50 Gy cumulative over all treatments.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.dosimetry.domain.checks import require_fraction, require_positive

__all__ = [
    "CUMULATIVE_LUNG_LIMIT_GY",
    "LSF_CONTRAINDICATION",
    "LUNG_LIMIT_PER_TREATMENT_GY",
    "LungShuntBand",
    "lung_dose_gy",
    "lung_shunt_band",
]

#: Lung shunt fraction above which SIRT is contraindicated (Cazzato et al., Cancers 13:6368 (2021), Table 1: "> 20 %").
LSF_CONTRAINDICATION = 0.20
#: Lung dose limit per treatment, Gy (EANM 2022; Cazzato 2021 "30-50 Gy").
LUNG_LIMIT_PER_TREATMENT_GY = 30.0
#: Cumulative lung dose limit over all treatments, Gy (EANM 2022).
CUMULATIVE_LUNG_LIMIT_GY = 50.0


@dataclass(frozen=True)
class LungShuntBand:
    """The resin lung-shunt band an LSF falls in: ``reduction`` is the fraction by which the
    BSA-method activity is reduced; ``contraindicated`` when LSF > 20 %."""

    label: str
    reduction: float
    contraindicated: bool


def lung_shunt_band(lung_shunt_fraction: float) -> LungShuntBand:
    """The band of the resin BSA method for ``lung_shunt_fraction`` (0-1); edges in the module doc."""
    lsf = lung_shunt_fraction
    require_fraction("lung_shunt_fraction", lsf)
    if lsf < 0.10:
        return LungShuntBand("lsf-below-10", 0.0, False)
    if lsf < 0.15:
        return LungShuntBand("lsf-10-15", 0.20, False)
    if lsf <= LSF_CONTRAINDICATION:
        return LungShuntBand("lsf-15-20", 0.40, False)
    return LungShuntBand("lsf-above-20", 0.0, True)


def lung_dose_gy(activity_gbq: float, lung_shunt_fraction: float, dose_constant_gy_kg_per_gbq: float,
                 lung_mass_kg: float = 1.0) -> float:
    """D_lung = C·A·LSF / M_lung (Gy)."""
    require_positive("lung_mass_kg", lung_mass_kg)
    return dose_constant_gy_kg_per_gbq * activity_gbq * lung_shunt_fraction / lung_mass_kg
