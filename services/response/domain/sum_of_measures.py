"""The engine shared by criteria that follow a sum of target-lesion measures over time.

RECIST 1.1 (Eisenhauer 2009 §4.3-§4.4), mRECIST (Lencioni & Llovet 2010) and EASL 2001 differ in
the measure (longest diameter, viable diameter, product of viable diameters) and in the
thresholds; the rest is common:

- the nadir is the smallest sum recorded, baseline included (RECIST 1.1 §4.3.1); a visit whose
  sum is incomplete (NE) never sets it;
- PR is judged against the baseline, PD against the nadir;
- a visit with a missing target lesion is NE unless the lesions measured already prove PD
  (RECIST 1.1 §4.4.2: baseline 50 mm, two of three lesions measured at 80 mm → PD);
- after a CR, any reappearing target or non-target lesion is PD (EORTC RECIST FAQ "Does a new
  lesion always result in PD?": the reappearance of any malignant lesion);
- once PR (or CR) is reached, a later visit stays PR unless it is PD (EORTC RECIST FAQ:
  100 → 70 → 70 → 80 mm stays PR), where the rule says so;
- non-target and new lesions combine with the target category by RECIST 1.1 Tables 1-2.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.response.domain.model import Assessment
from services.response.domain.result import CriterionResult, VisitResponse, percent_change
from services.response.domain.series import (
    NODE_PATHOLOGICAL_MM,
    LesionValue,
    Series,
    target_value,
)
from services.response.domain.tables import (
    CR,
    NE,
    NON_CR_NON_PD,
    PD,
    PR,
    SD,
    non_target_category,
    overall_response,
)

__all__ = ["SumRule", "assess_sum_of_measures", "is_progression", "is_response"]

_ONE = Decimal(1)


@dataclass(frozen=True)
class SumRule:
    """Thresholds and measures of one sum-based criterion.

    ``value`` gives a lesion's contribution to the sum; ``node_axis`` a node's short axis for
    the CR test (nodes < 10 mm count as complete response, RECIST 1.1 §4.3.2).
    """

    criterion: str
    measure_code: str
    measure_unit: str
    value: LesionValue
    node_axis: LesionValue
    pr_decrease: Decimal
    pd_increase: Decimal
    pd_min_increase: Decimal | None
    continued_pr: bool
    exclude_treated: bool
    source: str


def is_progression(value: Decimal, reference: Decimal, rule: SumRule) -> bool:
    """PD: an increase of at least ``pd_increase`` (and of ``pd_min_increase`` absolute)."""
    if value <= reference:
        return False
    if value < reference * (_ONE + rule.pd_increase):
        return False
    return rule.pd_min_increase is None or value - reference >= rule.pd_min_increase


def is_response(value: Decimal, reference: Decimal, rule: SumRule) -> bool:
    """PR: a decrease of at least ``pr_decrease`` (14 → 9.8 mm is exactly −30 %: PR)."""
    return value <= reference * (_ONE - rule.pr_decrease)


def _complete_response(series: Series, visit: Assessment, rule: SumRule) -> bool:
    for target in series.targets:
        own = visit.by_id().get(target.lesion_id)
        if own is not None and own.merged_into:
            continue
        if target.is_node:
            axis = target_value(series, visit, target.lesion_id, rule.node_axis,
                                exclude_treated=rule.exclude_treated)
            if axis is None or axis >= NODE_PATHOLOGICAL_MM:
                return False
        else:
            size = target_value(series, visit, target.lesion_id, rule.value,
                                exclude_treated=rule.exclude_treated)
            if size is None or size != 0:
                return False
    return True


def _category(total: Decimal | None, measured: Decimal, reference: Decimal, complete_response: bool,
              rule: SumRule) -> str:
    """Target category judged against one reference (baseline or nadir)."""
    if total is None:
        return PD if is_progression(measured, reference, rule) else NE
    if is_progression(total, reference, rule):
        return PD
    if complete_response:
        return CR
    return PR if is_response(total, reference, rule) else SD


def baseline_sum(series: Series, rule: SumRule) -> Decimal:
    values = [target_value(series, series.baseline, tid, rule.value, exclude_treated=False)
              for tid in series.target_ids]
    return sum((v for v in values if v is not None), Decimal(0))


def assess_sum_of_measures(series: Series, rule: SumRule) -> CriterionResult:
    """Time-point responses of every follow-up under ``rule``."""
    has_targets = bool(series.targets)
    base = baseline_sum(series, rule)
    nadir, nadir_date = base, series.baseline.date
    responded = False
    previous_overall: str | None = None
    visits: list[VisitResponse] = []
    for visit in series.follow_ups:
        notes: list[str] = []
        values = {tid: target_value(series, visit, tid, rule.value, exclude_treated=rule.exclude_treated)
                  for tid in series.target_ids}
        treated = tuple(sorted(lid for lid in series.treated_after_baseline
                               if series.treated_at(lid, visit.date)))
        missing = [tid for tid, v in values.items() if v is None]
        measured = sum((v for v in values.values() if v is not None), Decimal(0))
        total = None if missing else measured
        if missing:
            why = [f"{tid} (treated by a further local therapy)"
                   if series.further_treated_at(tid, visit.date) and rule.exclude_treated
                   else tid for tid in missing]
            notes.append("target lesions not evaluable: " + ", ".join(why))
        nt = non_target_category(series.non_target_statuses(visit))
        new = series.new_lesions(visit)
        cr = has_targets and total is not None and _complete_response(series, visit, rule)
        target: str | None
        continued = False
        if not has_targets:
            target = None
            t_base = t_nadir = None
        else:
            target = _category(total, measured, nadir, cr, rule)
            if target != PD and total is not None:
                if previous_overall == CR and not cr:
                    target = PD
                    notes.append("a target lesion reappeared after a complete response: PD")
                elif not cr:
                    target = PR if is_response(total, base, rule) else SD
                    if target == SD and rule.continued_pr and responded:
                        target, continued = PR, True
                        notes.append("partial response continues: no progression since the response")
            t_base = _category(total, measured, base, cr, rule)
            t_nadir = _category(total, measured, nadir, cr, rule)
        overall = overall_response(target, nt, bool(new))
        if previous_overall == CR and nt == NON_CR_NON_PD and overall != PD:
            overall = PD
            notes.append("a non-target lesion reappeared after a complete response: PD")
        vs_base = overall_response(t_base, nt, bool(new))
        vs_nadir = overall_response(t_nadir, nt, bool(new))
        if new:
            notes.append("new lesion(s): " + ", ".join(m.lesion_id for m in new))
        visits.append(VisitResponse(
            date=visit.date, overall=overall, vs_baseline=vs_base, vs_nadir=vs_nadir,
            measure_code=rule.measure_code,
            measure=total if has_targets else None, measure_unit=rule.measure_unit,
            percent_vs_baseline=percent_change(total, base) if total is not None and has_targets else None,
            percent_vs_nadir=percent_change(total, nadir) if total is not None and has_targets else None,
            nadir=nadir if has_targets else None, nadir_date=nadir_date if has_targets else None,
            target=target, non_target=nt,
            new_lesions=tuple(m.lesion_id for m in new), treated_lesions=treated,
            notes=tuple(notes), continued_response=continued and overall == PR))
        if total is not None and has_targets and total < nadir:
            nadir, nadir_date = total, visit.date
        if overall == PD:
            responded = False
        elif target in (PR, CR):
            responded = True
        if overall != NE:  # an NE visit assigns nothing: the last assigned response stands
            previous_overall = overall
    return CriterionResult(rule.criterion, series.baseline.date, base if has_targets else None,
                           rule.measure_code, rule.measure_unit, tuple(visits), series.notes,
                           final_nadir_date=nadir_date)
