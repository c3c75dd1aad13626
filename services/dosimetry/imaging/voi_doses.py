"""The dvh stage of a voxel job: each VOI's dose metrics, sampled DVH, mass, share of the counts
and BED (:mod:`services.dosimetry.domain.dvh`, :mod:`services.dosimetry.domain.radiobiology`), and
the lung shunt fraction. Pure: the pipeline computes them beside its store stage
(:mod:`.pipeline`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.radiobiology import (
    TissueRadiobiology,
    TissueTable,
    bed_metrics,
    tissue_for_role,
)
from services.dosimetry.imaging.errors import ImagingError
from services.dosimetry.imaging.voi import Voi

__all__ = ["VoiDose", "voi_doses"]


@dataclass(frozen=True)
class VoiDose:
    """Dose metrics of one VOI. ``metrics`` holds Dmean, D50, D70, D90 (Gy), V100, V120 (%),
    Dmin and Dmax (Gy); ``source`` is ``segmentation``, ``rtstruct`` or ``automatic``."""

    name: str
    role: str
    source: str
    voxel_count: int
    volume_ml: float
    mass_g: float
    activity_fraction: float
    metrics: dict[str, float]
    #: The tissue parameters of the BED (None: absorbed dose only) and BEDmean, BED70, EQD2mean (Gy).
    tissue: TissueRadiobiology | None = None
    radiobiology: dict[str, float] = field(default_factory=dict)
    #: The segment's TrackingUID (links a lesion to its BodyStructure), when the SEG gives one.
    tracking_uid: str = ""
    #: The sampled cumulative DVH: (volume %, Dx Gy) for x = 0 … 100 (:func:`sampled_dvh`).
    dvh: tuple[tuple[float, float], ...] = ()


def voi_doses(dose: np.ndarray, vois: list[Voi], counts: np.ndarray, density: np.ndarray, voxel_ml: float,
              tissues: TissueTable | None) -> tuple[list[VoiDose], float | None]:
    """Each VOI's dose metrics, sampled DVH, mass, share of the counts and BED, and the lung shunt
    fraction (the dvh stage)."""
    from services.dosimetry.domain.dvh import dvh_metrics, sampled_dvh

    total_counts = float(counts.sum(dtype=np.float64))
    results: list[VoiDose] = []
    for v in vois:
        if v.mask.shape != dose.shape:
            raise DosimetryInputError("mask", f"mask shape {v.mask.shape} differs from dose shape {dose.shape}")
        # the VOI's voxels found once (a scan of the whole volume, which each metric otherwise
        # repeated: five per VOI, ~2 ms a VOI at 128³), then read in the same order as a mask reads
        voxels = np.flatnonzero(v.mask)
        values = np.take(dose, voxels)
        every = np.ones(values.shape, dtype=bool)
        metrics = dvh_metrics(values, every)
        tissue = tissue_for_role(v.role, tissues or TissueTable())
        radiobiology = _voi_bed(values, every, v.name, tissue)
        results.append(VoiDose(v.name, v.role, v.source, voxels.size, voxels.size * voxel_ml,
                               float(np.take(density, voxels).sum() * voxel_ml),
                               float(np.take(counts, voxels).sum(dtype=np.float64) / total_counts), metrics, tissue,
                               radiobiology, v.tracking_uid, sampled_dvh(values, every)))
    return results, _lung_shunt_fraction(vois, counts)


def _voi_bed(values: np.ndarray, every: np.ndarray, name: str, tissue: TissueRadiobiology | None) -> dict[str, float]:
    """BEDmean, BED70 and EQD2mean of one VOI's dose ``values`` over their BED (empty without
    tissue values)."""
    if tissue is None:
        return {}
    try:
        return bed_metrics(values, every, tissue)
    except DosimetryInputError as exc:
        raise ImagingError(f"the BED of VOI {name!r} cannot be computed: {exc.message}", exc.field) from exc


def _lung_shunt_fraction(vois: list[Voi], counts: np.ndarray) -> float | None:
    """Counts in the lungs / counts in lungs + liver, when both VOIs exist (EANM 2022)."""
    lung = [v for v in vois if v.role == "lung"]
    liver = [v for v in vois if v.role == "liver"]
    if not lung or not liver:
        return None
    lung_mask = np.zeros(counts.shape, dtype=bool)
    for v in lung:
        lung_mask |= v.mask
    liver_mask = np.zeros(counts.shape, dtype=bool)
    for v in liver:
        liver_mask |= v.mask
    liver_mask &= ~lung_mask
    c_lung = float(counts[lung_mask].sum(dtype=np.float64))
    c_liver = float(counts[liver_mask].sum(dtype=np.float64))
    return c_lung / (c_lung + c_liver) if c_lung + c_liver > 0 else None
