"""Choi criteria (Choi H et al., J Clin Oncol 2007;25:1753-1759, Table 1).

Size is the RECIST sum of longest diameters of the target lesions; density the mean
attenuation (HU, portal venous CT) of the target lesions.

- CR: disappearance of all lesions, no new lesion;
- PR: size down ≥ 10 % **or** density down ≥ 15 % from baseline, no new lesion, no obvious
  progression of non-measurable disease;
- PD: size up ≥ 10 % (from the nadir) and not PR by density, or new lesions (new
  intratumoural nodules are not represented in the input), or unequivocal non-target progression;
- SD: none of the above.
"""

from __future__ import annotations

from decimal import Decimal

from services.response.domain.model import Assessment
from services.response.domain.result import CriterionResult, VisitResponse, percent_change
from services.response.domain.series import Series, recist_value, target_value
from services.response.domain.sum_of_measures import (
    SumRule,
    baseline_sum,
    is_progression,
    is_response,
)
from services.response.domain.tables import (
    CR,
    NE,
    PD,
    PR,
    SD,
    non_target_category,
    overall_response,
)

__all__ = [
    "CHOI_DENSITY_DECREASE",
    "CHOI_SIZE_CHANGE",
    "assess_choi",
    "choi_rule",
    "density_lesion_ids",
    "density_missing",
    "mean_density_hu",
]

#: Choi 2007 Table 1: size change of 10 % (PR down, PD up).
CHOI_SIZE_CHANGE = Decimal("0.10")
#: Choi 2007 Table 1: density decrease of 15 % for PR.
CHOI_DENSITY_DECREASE = Decimal("0.15")


def choi_rule(*, exclude_treated: bool = False) -> SumRule:
    return SumRule(
        criterion="choi", measure_code="sum-of-diameters", measure_unit="mm",
        value=recist_value, node_axis=recist_value,
        pr_decrease=CHOI_SIZE_CHANGE, pd_increase=CHOI_SIZE_CHANGE, pd_min_increase=None,
        continued_pr=False, exclude_treated=exclude_treated, source="Choi 2007 Table 1",
    )


def density_lesion_ids(series: Series) -> tuple[str, ...]:
    """The target lesions with an attenuation (HU) at baseline: the set Choi density follows."""
    return tuple(t.lesion_id for t in series.targets if t.attenuation_hu is not None)


def density_missing(series: Series, visit: Assessment, *, exclude_treated: bool) -> tuple[str, ...]:
    """Baseline-HU target lesions without an HU at this visit (or left out as treated)."""
    lesions = visit.by_id()
    return tuple(t for t in density_lesion_ids(series)
                 if t not in lesions or lesions[t].attenuation_hu is None
                 or (exclude_treated and series.further_treated_at(t, visit.date)))


def mean_density_hu(series: Series, visit: Assessment, *, exclude_treated: bool) -> Decimal | None:
    """Mean attenuation of the target lesions that had an HU at baseline.

    ``None`` when one of them has no HU at this visit: a mean over other lesions than at
    baseline is not a change of density (Choi 2007 follows the same target lesions).
    """
    ids = density_lesion_ids(series)
    if not ids or density_missing(series, visit, exclude_treated=exclude_treated):
        return None
    lesions = visit.by_id()
    numbers = [hu for t in ids if (hu := lesions[t].attenuation_hu) is not None]
    return sum(numbers, Decimal(0)) / Decimal(len(numbers))


def _density_response(density: Decimal | None, base_density: Decimal | None) -> bool:
    if density is None or base_density is None or base_density <= 0:
        return False
    return density <= base_density * (Decimal(1) - CHOI_DENSITY_DECREASE)


def assess_choi(series: Series, *, exclude_treated: bool = False) -> CriterionResult:
    """Choi time-point responses (Choi 2007 Table 1; overall table as RECIST 1.1)."""
    rule = choi_rule(exclude_treated=exclude_treated)
    base = baseline_sum(series, rule)
    base_density = mean_density_hu(series, series.baseline, exclude_treated=False)
    notes_all = list(series.notes)
    if base_density is None:
        notes_all.append("Choi: no baseline attenuation (HU); density criterion not applied")
    elif base_density <= 0:
        notes_all.append(f"Choi: baseline mean attenuation {base_density} HU ≤ 0; density criterion not applied")
    nadir, nadir_date = base, series.baseline.date
    visits: list[VisitResponse] = []
    has_targets = bool(series.targets)
    for visit in series.follow_ups:
        notes: list[str] = []
        values = {t: target_value(series, visit, t, rule.value, exclude_treated=exclude_treated)
                  for t in series.target_ids}
        missing = [t for t, v in values.items() if v is None]
        measured = sum((v for v in values.values() if v is not None), Decimal(0))
        total = None if missing else measured
        if missing:
            notes.append("target lesions not evaluable: " + ", ".join(missing))
        density = mean_density_hu(series, visit, exclude_treated=exclude_treated)
        no_density = density_missing(series, visit, exclude_treated=exclude_treated)
        if base_density is not None and no_density:
            notes.append("Choi: no attenuation (HU) at this visit for " + ", ".join(no_density)
                         + "; density criterion not applied")
        by_density = _density_response(density, base_density)
        nt = non_target_category(series.non_target_statuses(visit))
        new = series.new_lesions(visit)
        all_gone = has_targets and total is not None and all(
            (v is not None and (v < 10 if t.is_node else v == 0))
            for t, v in ((t, values[t.lesion_id]) for t in series.targets))

        def category(reference: Decimal, *, allow_density: bool,
                     total: Decimal | None = total, measured: Decimal = measured,
                     all_gone: bool = all_gone, by_density: bool = by_density) -> str | None:
            if not has_targets:
                return None
            size = total if total is not None else measured
            if is_progression(size, reference, rule) and not by_density:
                return PD
            if total is None:
                return NE
            if all_gone:
                return CR
            if is_response(total, reference, rule) or (allow_density and by_density):
                return PR
            return SD

        target = category(base, allow_density=True)
        if target in (PR, SD, CR) and total is not None and is_progression(total, nadir, rule) and not by_density:
            target = PD
        overall = overall_response(target, nt, bool(new))
        vs_base = overall_response(category(base, allow_density=True), nt, bool(new))
        vs_nadir = overall_response(category(nadir, allow_density=False), nt, bool(new))
        if by_density:
            notes.append("PR by density: mean attenuation down ≥ 15 % from baseline (Choi 2007)")
        visits.append(VisitResponse(
            date=visit.date, overall=overall, vs_baseline=vs_base, vs_nadir=vs_nadir,
            measure_code=rule.measure_code, measure=total if has_targets else None,
            measure_unit="mm",
            percent_vs_baseline=percent_change(total, base) if total is not None and has_targets else None,
            percent_vs_nadir=percent_change(total, nadir) if total is not None and has_targets else None,
            nadir=nadir if has_targets else None, nadir_date=nadir_date if has_targets else None,
            target=target, non_target=nt, new_lesions=tuple(m.lesion_id for m in new),
            treated_lesions=tuple(sorted(lid for lid in series.treated_after_baseline
                                         if series.treated_at(lid, visit.date))),
            extra=(("mean-attenuation", density),
                   ("percent-change-attenuation",
                    percent_change(density, base_density)
                    if density is not None and base_density not in (None, Decimal(0)) else None)),
            notes=tuple(notes)))
        if total is not None and has_targets and total < nadir:
            nadir, nadir_date = total, visit.date
    return CriterionResult("choi", series.baseline.date, base if has_targets else None,
                           rule.measure_code, "mm", tuple(visits), tuple(notes_all),
                           final_nadir_date=nadir_date)
