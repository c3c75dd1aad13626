"""Partition (multi-compartment) model (Ho S. et al., Eur J Nucl Med 23:947, 1996; EANM 2022;
EANM 2022).

T/N is the ratio of activity *concentrations* (tumour / normal liver) on Tc-99m MAA SPECT.

    D_N    = C·A·(1 − LSF) / (T/N·M_T + M_N)
    D_T    = T/N · D_N
    D_lung = C·A·LSF / M_lung

Multi-lesion form (per-lesion T/N_k, EANM 2022 "multi-compartment"): the denominator becomes
Σ_k T/N_k·M_k + M_N and D_k = T/N_k·D_N.

Solving for A: each constraint gives an activity per Gy; the prescribed activity is the smallest
of the tumour-target activity (when a target is given), the normal-liver-limit activity (when a
limit is given) and the lung-limit activity; the constraint that gave it is reported as the
limiting factor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.dosimetry.domain.checks import require_fraction, require_positive
from services.dosimetry.domain.errors import DosimetryInputError

__all__ = ["Lesion", "PartitionDoses", "PartitionSolution", "partition_doses", "solve_partition_activity"]


@dataclass(frozen=True)
class Lesion:
    """One tumour compartment: its mass (kg) and its tumour-to-normal concentration ratio."""

    mass_kg: float
    tumor_to_normal: float


@dataclass(frozen=True)
class PartitionDoses:
    """Predicted mean absorbed doses (Gy) for one activity."""

    activity_gbq: float
    normal_liver_gy: float
    tumor_gy: tuple[float, ...]
    lung_gy: float

    @property
    def tumor_mean_gy(self) -> float:
        """Dose of the whole tumour compartment when there is one lesion (else the first)."""
        return self.tumor_gy[0]


@dataclass(frozen=True)
class PartitionSolution:
    """The activity the partition model prescribes and the constraint that bound it."""

    doses: PartitionDoses
    limiting_factor: str  # "tumor-target" | "normal-liver-limit" | "lung-limit"
    candidates_gbq: dict[str, float]


def _validate(lesions: Sequence[Lesion], normal_mass_kg: float, lsf: float, c: float, lung_mass_kg: float) -> None:
    if not lesions:
        raise DosimetryInputError("tumor_volume_ml", "the partition model needs at least one tumour compartment")
    for lesion in lesions:
        if not math.isfinite(lesion.mass_kg) or lesion.mass_kg <= 0:
            raise DosimetryInputError("tumor_volume_ml", f"tumour mass must be positive, got {lesion.mass_kg}")
        if not math.isfinite(lesion.tumor_to_normal) or lesion.tumor_to_normal <= 0:
            raise DosimetryInputError("tumor_to_normal_ratio", f"must be positive, got {lesion.tumor_to_normal}")
    if not math.isfinite(normal_mass_kg) or normal_mass_kg <= 0:
        raise DosimetryInputError("liver_volume_ml", f"normal liver mass must be positive, got {normal_mass_kg}")
    require_fraction("lung_shunt_fraction", lsf, below_one=True)
    require_positive("dose_constant", c)
    require_positive("lung_mass_kg", lung_mass_kg)


def partition_doses(activity_gbq: float, lesions: Sequence[Lesion], normal_mass_kg: float,
                    lung_shunt_fraction: float, dose_constant_gy_kg_per_gbq: float,
                    lung_mass_kg: float = 1.0) -> PartitionDoses:
    """Normal-liver, per-lesion and lung doses (Gy) for ``activity_gbq`` (formulas in the module doc)."""
    c, lsf = dose_constant_gy_kg_per_gbq, lung_shunt_fraction
    _validate(lesions, normal_mass_kg, lsf, c, lung_mass_kg)
    weighted_mass = sum(les.tumor_to_normal * les.mass_kg for les in lesions) + normal_mass_kg
    normal = c * activity_gbq * (1 - lsf) / weighted_mass
    return PartitionDoses(
        activity_gbq=activity_gbq,
        normal_liver_gy=normal,
        tumor_gy=tuple(les.tumor_to_normal * normal for les in lesions),
        lung_gy=c * activity_gbq * lsf / lung_mass_kg,
    )


def solve_partition_activity(*, lesions: Sequence[Lesion], normal_mass_kg: float, lung_shunt_fraction: float,
                             dose_constant_gy_kg_per_gbq: float, lung_mass_kg: float = 1.0,
                             tumor_target_gy: float | None = None, normal_liver_limit_gy: float | None = None,
                             lung_limit_gy: float | None = None) -> PartitionSolution:
    """The activity (GBq) meeting the tumour target (first lesion's T/N, or the lowest-dosed
    lesion when several are given) without exceeding the normal-liver or lung limit.

    At least one of ``tumor_target_gy`` and ``normal_liver_limit_gy`` is required; the lung limit
    alone does not define a prescription. Ties are resolved in the order tumour target, normal
    liver, lung.
    """
    if tumor_target_gy is None and normal_liver_limit_gy is None:
        raise DosimetryInputError("target_dose_gy", "the partition model needs targetDoseGy or normalLiverLimitGy")
    unit = partition_doses(1.0, lesions, normal_mass_kg, lung_shunt_fraction, dose_constant_gy_kg_per_gbq,
                           lung_mass_kg)
    candidates: dict[str, float] = {}
    if tumor_target_gy is not None:
        if not math.isfinite(tumor_target_gy) or tumor_target_gy <= 0:
            raise DosimetryInputError("target_dose_gy", f"must be positive, got {tumor_target_gy}")
        candidates["tumor-target"] = tumor_target_gy / min(unit.tumor_gy)
    if normal_liver_limit_gy is not None:
        if not math.isfinite(normal_liver_limit_gy) or normal_liver_limit_gy <= 0:
            raise DosimetryInputError("normal_liver_limit_gy", f"must be positive, got {normal_liver_limit_gy}")
        candidates["normal-liver-limit"] = normal_liver_limit_gy / unit.normal_liver_gy
    if lung_limit_gy is not None and unit.lung_gy > 0:
        if not math.isfinite(lung_limit_gy) or lung_limit_gy < 0:
            raise DosimetryInputError("lung_limit_gy", f"must not be negative, got {lung_limit_gy}")
        candidates["lung-limit"] = lung_limit_gy / unit.lung_gy
    factor = min(candidates, key=lambda k: candidates[k])  # dict order breaks ties
    activity = candidates[factor]
    doses = partition_doses(activity, lesions, normal_mass_kg, lung_shunt_fraction,
                            dose_constant_gy_kg_per_gbq, lung_mass_kg)
    return PartitionSolution(doses=doses, limiting_factor=factor, candidates_gbq=candidates)
