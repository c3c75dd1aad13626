"""Biologically effective dose (BED) and EQD2 of a Y-90 permanent implant, voxel by voxel.

For a permanent implant whose dose rate falls with the physical decay constant λ and whose
sublethal damage repairs mono-exponentially with constant μ, the linear-quadratic model gives
(Dale, Br. J. Radiol. 58:515, 1985, eq. for a decaying source delivered to completion)::

    BED = D + D² · λ / ((μ + λ) · α/β)

with λ = ln 2 / T½ (Y-90: 64.1 h) and μ = ln 2 / T_rep. It is applied to radioembolisation by
Cremonesi et al. (Q. J. Nucl. Med. Mol. Imaging 52:168, 2008) and Strigari et al. (J. Nucl. Med.
51:1377, 2010). The dose in 2 Gy fractions with the same effect is EQD2 = BED / (1 + 2 Gy / (α/β)).

BED is not linear in D: the BED of a VOI's mean dose is not its mean BED. Statistics are taken
over the voxel BED map (:func:`bed_metrics`).

Default tissue parameters (settings may replace them): normal liver α/β 2.5 Gy, T_rep 2.5 h;
tumour α/β 10 Gy, T_rep 1.5 h (Cremonesi 2008; Strigari 2010).

A negative absorbed dose is not physical; kernel convolution by FFT leaves rounding residues of
the order of 1e-6 Gy below zero in cold voxels, which are taken as 0 Gy. A voxel more than
:data:`NEGATIVE_DOSE_TOLERANCE_GY` below zero is an error in the dose map, not a residue, and is
refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.dosimetry.domain.constants import Y90_HALF_LIFE_H
from services.dosimetry.domain.dvh import dvh_metrics
from services.dosimetry.domain.errors import DosimetryInputError

__all__ = [
    "NEGATIVE_DOSE_TOLERANCE_GY",
    "NORMAL_LIVER",
    "TUMOUR",
    "TissueRadiobiology",
    "TissueTable",
    "bed_gy",
    "bed_metrics",
    "eqd2_gy",
    "tissue_for_role",
]

#: Voxels this far below 0 Gy are refused rather than taken as 0 Gy (FFT residues are ~1e-6 Gy).
NEGATIVE_DOSE_TOLERANCE_GY = 0.01


@dataclass(frozen=True)
class TissueRadiobiology:
    """Linear-quadratic parameters of one tissue: α/β (Gy) and the repair half-time (h)."""

    name: str
    alpha_beta_gy: float
    repair_half_time_h: float
    source: str

    def __post_init__(self) -> None:
        for field, value in (("alpha_beta_gy", self.alpha_beta_gy),
                             ("repair_half_time_h", self.repair_half_time_h)):
            if not (math.isfinite(value) and value > 0):
                raise DosimetryInputError(field, f"must be a positive number, got {value}")

    def quadratic_factor(self, physical_half_life_h: float = Y90_HALF_LIFE_H) -> float:
        """λ / ((μ + λ) · α/β) in 1/Gy: BED = D + factor · D²."""
        if not (math.isfinite(physical_half_life_h) and physical_half_life_h > 0):
            raise DosimetryInputError("physical_half_life_h",
                                      f"must be a positive number, got {physical_half_life_h}")
        decay = math.log(2) / physical_half_life_h
        repair = math.log(2) / self.repair_half_time_h
        return decay / ((repair + decay) * self.alpha_beta_gy)


NORMAL_LIVER = TissueRadiobiology("normal-liver", 2.5, 2.5,
                                  "Cremonesi 2008; Strigari 2010 (normal liver)")
TUMOUR = TissueRadiobiology("tumour", 10.0, 1.5, "Cremonesi 2008; Strigari 2010 (tumour)")


def _non_negative(dose_gy: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
    dose = np.asarray(dose_gy)
    if not np.issubdtype(dose.dtype, np.floating):
        dose = dose.astype(np.float64)
    if dose.size and not np.all(np.isfinite(dose)):
        raise DosimetryInputError("dose_gy", "the dose map holds a value that is not finite")
    if dose.size and float(dose.min()) < -NEGATIVE_DOSE_TOLERANCE_GY:
        raise DosimetryInputError(
            "dose_gy", f"the dose map holds {float(dose.min()):.6g} Gy, below zero by more than "
                       f"{NEGATIVE_DOSE_TOLERANCE_GY} Gy")
    clipped: npt.NDArray[np.floating[Any]] = np.maximum(dose, 0)
    return clipped


def bed_gy(dose_gy: npt.ArrayLike, tissue: TissueRadiobiology,
           physical_half_life_h: float = Y90_HALF_LIFE_H) -> npt.NDArray[np.floating[Any]]:
    """Voxel BED (Gy) of an absorbed-dose map (Gy) delivered by complete decay (Dale 1985)."""
    factor = tissue.quadratic_factor(physical_half_life_h)
    dose = _non_negative(dose_gy)
    bed: npt.NDArray[np.floating[Any]] = dose + factor * dose * dose
    return bed


def eqd2_gy(bed: npt.ArrayLike, alpha_beta_gy: float) -> npt.NDArray[np.floating[Any]]:
    """EQD2 (Gy) from BED (Gy): BED / (1 + 2 Gy / (α/β))."""
    if not (math.isfinite(alpha_beta_gy) and alpha_beta_gy > 0):
        raise DosimetryInputError("alpha_beta_gy", f"must be a positive number, got {alpha_beta_gy}")
    out: npt.NDArray[np.floating[Any]] = np.asarray(bed) / (1.0 + 2.0 / alpha_beta_gy)
    return out


def bed_metrics(dose_gy: npt.ArrayLike, mask: npt.ArrayLike, tissue: TissueRadiobiology,
                physical_half_life_h: float = Y90_HALF_LIFE_H,
                d_percents: tuple[float, ...] = (70,)) -> dict[str, float]:
    """BED statistics of one VOI, computed over the voxel BED map.

    Keys: ``BEDmean`` and ``EQD2mean`` (Gy), and ``BED<x>`` for each x in ``d_percents``: the
    minimum BED of the hottest x % of the VOI, by the nearest-rank rule of the DVH metrics.
    """
    m = np.asarray(mask, dtype=bool)
    dose = np.asarray(dose_gy)
    if m.shape != dose.shape:
        raise DosimetryInputError("mask", f"mask shape {m.shape} differs from dose shape {dose.shape}")
    values = _non_negative(dose[m])
    bed = bed_gy(values, tissue, physical_half_life_h)
    dvh = dvh_metrics(bed, np.ones(bed.shape, dtype=bool), d_percents=d_percents, v_gy=())
    out = {"BEDmean": dvh["Dmean"],
           "EQD2mean": float(eqd2_gy(dvh["Dmean"], tissue.alpha_beta_gy))}
    for x in d_percents:
        out[f"BED{x:g}"] = dvh[f"D{x:g}"]
    return out


@dataclass(frozen=True)
class TissueTable:
    """Which linear-quadratic parameters a VOI takes, by its role (the project's rule: tumour and lesion
    VOIs the tumour values; the liver and the normal liver the liver values; other organs none,
    so they get absorbed dose only)."""

    tumour: TissueRadiobiology = TUMOUR
    liver: TissueRadiobiology = NORMAL_LIVER


def tissue_for_role(role: str, table: TissueTable = TissueTable()) -> TissueRadiobiology | None:
    """The tissue parameters of a VOI of ``role`` (``tumour``, ``liver``, ``normal-liver``, ``lung``, ``other``)."""
    if role == "tumour":
        return table.tumour
    if role in ("liver", "normal-liver"):
        return table.liver
    return None
