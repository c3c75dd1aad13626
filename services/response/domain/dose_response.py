"""Dose-response per lesion: each lesion's absorbed dose beside its own response course.

A tumour board asks which lesions got at least 100-150 Gy and whether those responded (Garin
2012; Chiesa 2015; EANM 2022 §6). Per lesion: its absorbed dose and BED (from the voxel
dosimetry result whose ``focus`` is the lesion), its size at baseline and at the latest
assessment, the % change, and a per-lesion category by the chosen criterion's thresholds
applied to that lesion's own measure:

========================  =====================  ========  ==========
criterion                 measure                PR at     PD at
========================  =====================  ========  ==========
RECIST 1.1, iRECIST       longest diameter (a    ≤ −30 %   ≥ +20 %
                          node: short axis)
mRECIST, EASL             viable diameter        ≤ −30 %   ≥ +20 %
Choi                      longest diameter       ≤ −10 %   ≥ +10 %
========================  =====================  ========  ==========

(RECIST 1.1 §4.3.1 and Lencioni & Llovet 2010 give these for sums of diameters; applied to one
lesion they describe that lesion's course, not the patient's response.) CR when the lesion's
measure is 0 mm (a node: short axis < 10 mm under RECIST). EASL is judged here on the viable
diameter, not its bidimensional product, and PERCIST (SULpeak of the hottest lesion) gives no
per-lesion category: ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.response.domain.model import Assessment, LesionMeasurement
from services.response.domain.result import percent_change

__all__ = ["LesionDose", "LesionDoseResponse", "dose_response_table"]

_THRESHOLDS: dict[str, tuple[str, Decimal, Decimal]] = {
    "recist-1.1": ("longest", Decimal(-30), Decimal(20)),
    "irecist": ("longest", Decimal(-30), Decimal(20)),
    "mrecist": ("viable", Decimal(-30), Decimal(20)),
    "easl": ("viable", Decimal(-30), Decimal(20)),
    "choi": ("longest", Decimal(-10), Decimal(10)),
}


@dataclass(frozen=True)
class LesionDose:
    """A lesion's absorbed dose (Gy, mean over its VOI) and BED (Gy) when known; ``source`` is
    the dose result it comes from (opaque here)."""

    lesion_id: str
    dose_gy: float
    bed_gy: float | None
    source: str = ""


@dataclass(frozen=True)
class LesionDoseResponse:
    lesion_id: str
    dose: LesionDose | None
    baseline_mm: Decimal | None
    latest_mm: Decimal | None
    change_percent: Decimal | None
    category: str | None


def _measure(m: LesionMeasurement, kind: str) -> Decimal | None:
    if m.too_small:
        return Decimal(5)  # RECIST 1.1 §4.3.2: present but too small to measure
    if kind == "viable":
        return m.viable_diameter_mm
    if m.is_node:
        return m.short_axis_mm
    return m.longest_diameter_mm


def _category(kind: str, pr: Decimal, pd: Decimal, m: LesionMeasurement, baseline: Decimal,
              latest: Decimal) -> str | None:
    if latest == 0 or (m.is_node and kind == "longest" and latest < 10):
        return "CR"
    change = percent_change(latest, baseline)
    if change is None:
        return None
    if change <= pr:
        return "PR"
    if change >= pd:
        return "PD"
    return "SD"


def dose_response_table(criterion: str, assessments: list[Assessment],
                        doses: dict[str, LesionDose]) -> tuple[LesionDoseResponse, ...]:
    """One row per lesion measured at baseline (the first assessment), in baseline order."""
    if not assessments:
        return ()
    kind, pr, pd = _THRESHOLDS.get(criterion, ("", Decimal(0), Decimal(0)))
    rows = []
    for m in assessments[0].lesions:
        baseline = _measure(m, kind or "longest")
        latest_m = next((a.by_id()[m.lesion_id] for a in reversed(assessments[1:]) if m.lesion_id in a.by_id()), None)
        latest = _measure(latest_m, kind or "longest") if latest_m is not None else None
        change = percent_change(latest, baseline) if baseline is not None and latest is not None else None
        category = (_category(kind, pr, pd, m, baseline, latest)
                    if kind and baseline is not None and latest is not None else None)
        rows.append(LesionDoseResponse(m.lesion_id, doses.get(m.lesion_id), baseline, latest, change, category))
    return tuple(rows)
