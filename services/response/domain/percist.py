"""PERCIST 1.0 (Wahl RL et al., J Nucl Med 2009;50 Suppl 1:122S-150S; O JH et al.,
Radiology 2016;280:576-584 for the practical steps).

- Measure: SULpeak of the single hottest lesion at each scan (it need not be the same lesion).
- Measurable at baseline: SULpeak ≥ 1.5 × liver SULmean + 2 × SD (3 cm ROI in the right lobe);
  in a diseased liver ≥ 2.0 × blood-pool SULmean + 2 × SD (descending aorta).
- CMR: uptake of every lesion at or below liver SULmean and blood-pool level, no new lesion.
- PMR: SULpeak down ≥ 30 % **and** ≥ 0.8 SUL units from baseline.
- PMD: SULpeak up > 30 % **and** > 0.8 SUL units, or a new FDG-avid lesion, or unequivocal
  progression of non-target lesions.
- SMD otherwise.
- Comparability: the liver SULmean of a follow-up scan should be within 20 % and 0.3 SUL units of
  the baseline scan; a scan that is not comparable, or has no reference, is NE here.
"""

from __future__ import annotations

from decimal import Decimal

from services.response.domain.model import Assessment, PetReference, ResponseInputError, Role
from services.response.domain.result import CriterionResult, VisitResponse, percent_change
from services.response.domain.series import Series
from services.response.domain.tables import NE, non_target_category

__all__ = [
    "CMR",
    "PERCIST_ABSOLUTE_CHANGE",
    "PERCIST_RELATIVE_CHANGE",
    "PMD",
    "PMR",
    "SMD",
    "assess_percist",
    "hottest_sul_peak",
    "measurability_threshold",
]

CMR, PMR, SMD, PMD = "CMR", "PMR", "SMD", "PMD"
#: Wahl 2009 PERCIST 1.0: 30 % relative change ...
PERCIST_RELATIVE_CHANGE = Decimal("0.30")
#: ... together with 0.8 SUL units absolute change.
PERCIST_ABSOLUTE_CHANGE = Decimal("0.8")
_LIVER_DRIFT = Decimal("0.20")
_LIVER_DRIFT_ABS = Decimal("0.3")


def measurability_threshold(ref: PetReference) -> tuple[Decimal, str] | None:
    """Wahl 2009: 1.5 × liver mean + 2 SD, or 2.0 × blood-pool mean + 2 SD when no liver ROI."""
    if ref.liver_mean is not None and ref.liver_sd is not None:
        return Decimal("1.5") * ref.liver_mean + 2 * ref.liver_sd, "liver"
    if ref.bloodpool_mean is not None and ref.bloodpool_sd is not None:
        return Decimal("2.0") * ref.bloodpool_mean + 2 * ref.bloodpool_sd, "blood pool"
    return None


def hottest_sul_peak(visit: Assessment, exclude: frozenset[str] = frozenset()) -> Decimal | None:
    """SULpeak of the hottest target or non-target lesion of a scan (new lesions aside)."""
    peaks = [m.sul_peak for m in visit.lesions
             if m.sul_peak is not None and m.role is not Role.NEW and m.lesion_id not in exclude]
    return max(peaks) if peaks else None


def _not_comparable(base: PetReference, ref: PetReference) -> str | None:
    if measurability_threshold(ref) is None:
        return "no liver or blood-pool reference on this scan"
    if base.liver_mean is not None and ref.liver_mean is not None and base.liver_mean > 0:
        drift = abs(ref.liver_mean - base.liver_mean)
        if drift > base.liver_mean * _LIVER_DRIFT and drift > _LIVER_DRIFT_ABS:
            return (f"liver SULmean {ref.liver_mean} differs from baseline {base.liver_mean} by "
                    "more than 20 % and 0.3 units (Wahl 2009): scans not comparable")
    return None


def _metabolic_category(peak: Decimal, reference: Decimal, complete: bool) -> str:
    change = peak - reference
    if complete:
        return CMR
    if change > 0 and change > reference * PERCIST_RELATIVE_CHANGE and change > PERCIST_ABSOLUTE_CHANGE:
        return PMD
    if -change >= reference * PERCIST_RELATIVE_CHANGE and -change >= PERCIST_ABSOLUTE_CHANGE:
        return PMR
    return SMD


def _complete(peak: Decimal, ref: PetReference) -> bool:
    limits = [v for v in (ref.liver_mean, ref.bloodpool_mean) if v is not None]
    return bool(limits) and all(peak <= limit for limit in limits)


def assess_percist(series: Series, *, exclude_treated: bool = False) -> CriterionResult:
    """PERCIST 1.0 responses of every follow-up scan (Wahl 2009).

    With ``exclude_treated`` a lesion treated locally since baseline is left out of the search
    for the hottest lesion (its uptake reflects the local treatment, RECIST 1.1 §3.1.3 analogy);
    the scan is then NE unless the untreated lesions already show PMD (as RECIST 1.1 §4.4.2
    treats a missing lesion).
    """
    base_ref = series.baseline.pet_reference
    threshold = measurability_threshold(base_ref)
    if threshold is None:
        raise ResponseInputError(
            "PERCIST needs the baseline liver (or blood-pool) SUL mean and SD", "Observation.code")
    base_peak = hottest_sul_peak(series.baseline)
    if base_peak is None or base_peak < threshold[0]:
        hottest = next((m.source for m in series.baseline.lesions
                        if m.sul_peak is not None and m.sul_peak == base_peak and m.source), None)
        raise ResponseInputError(
            f"no measurable lesion for PERCIST at baseline: hottest SULpeak {base_peak} < "
            f"{threshold[0]} ({threshold[1]} threshold, Wahl 2009)",
            hottest or "Bundle.entry")
    nadir, nadir_date = base_peak, series.baseline.date
    visits: list[VisitResponse] = []
    for visit in series.follow_ups:
        notes: list[str] = []
        treated = frozenset(lid for lid in series.treated_after_baseline
                            if series.treated_at(lid, visit.date))
        further = frozenset(lid for lid in series.further_treated
                            if series.further_treated_at(lid, visit.date))
        peak = hottest_sul_peak(
            visit, series.new_modality_lesions | (further if exclude_treated else frozenset()))
        partial = exclude_treated and bool(further & {m.lesion_id for m in visit.lesions})
        if partial:
            notes.append("left out of the hottest-lesion search (treated by a further local "
                         "therapy): " + ", ".join(sorted(further)))
        nt = non_target_category(series.non_target_statuses(visit))
        new = series.new_lesions(visit)
        problem = _not_comparable(base_ref, visit.pet_reference)
        progression_other = bool(new) or nt == "PD"
        if problem or peak is None:
            notes.append(problem or "no SULpeak measured on this scan")
            category = PMD if progression_other else NE
            visits.append(VisitResponse(
                date=visit.date, overall=category, vs_baseline=category, vs_nadir=category,
                measure_code="sul-peak", measure=peak, measure_unit="g/mL",
                percent_vs_baseline=None, percent_vs_nadir=None, nadir=nadir, nadir_date=nadir_date,
                non_target=nt, new_lesions=tuple(m.lesion_id for m in new),
                treated_lesions=tuple(sorted(treated)), notes=tuple(notes)))
            continue
        complete = _complete(peak, visit.pet_reference) and not new and nt in (None, "CR") and not partial
        vs_base = _metabolic_category(peak, base_peak, complete)
        vs_nadir = _metabolic_category(peak, nadir, complete)
        if partial and vs_base != PMD:
            vs_base = NE
        if partial and vs_nadir != PMD:
            vs_nadir = NE
        overall = vs_base
        if progression_other:
            overall = vs_base = vs_nadir = PMD
            notes.append("new lesion or unequivocal non-target progression: PMD")
        visits.append(VisitResponse(
            date=visit.date, overall=overall, vs_baseline=vs_base, vs_nadir=vs_nadir,
            measure_code="sul-peak", measure=peak, measure_unit="g/mL",
            percent_vs_baseline=percent_change(peak, base_peak),
            percent_vs_nadir=percent_change(peak, nadir), nadir=nadir, nadir_date=nadir_date,
            non_target=nt, new_lesions=tuple(m.lesion_id for m in new),
            treated_lesions=tuple(sorted(treated)), notes=tuple(notes)))
        if peak < nadir and not partial:
            nadir, nadir_date = peak, visit.date
    return CriterionResult("percist", series.baseline.date, base_peak, "sul-peak", "g/mL",
                           tuple(visits), series.notes, final_nadir_date=nadir_date)
