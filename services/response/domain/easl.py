"""EASL criteria (Bruix J et al., J Hepatol 2001;35:421-430, EASL Barcelona 2000 conference).

Bidimensional (WHO, Miller 1981) measurement restricted to viable, contrast-enhancing tumour:
the measure is the sum over target lesions of the product of the two largest perpendicular
viable diameters. CR: no enhancing tumour; PR: ≥ 50 % decrease of the viable area from
baseline; PD: an increase of ≥ 25 % (WHO wording "25 % or more") over the nadir, or new
lesions; SD otherwise. The project's rule summary words PD as "> 25 %"; the two differ only at exactly +25 %,
which this module scores PD as WHO does.

When only the longest viable diameter is given, the perpendicular one is taken equal to it
(the area of a round lesion); each such visit carries a note.
"""

from __future__ import annotations

from decimal import Decimal

from services.response.domain.model import TOO_SMALL_TO_MEASURE_MM, LesionMeasurement
from services.response.domain.mrecist import check_viable_baseline, node_axis
from services.response.domain.result import CriterionResult
from services.response.domain.series import Series, recist_value
from services.response.domain.sum_of_measures import SumRule, assess_sum_of_measures

__all__ = ["assess_easl", "easl_rule", "viable_area"]


def viable_area(m: LesionMeasurement) -> Decimal | None:
    """Product of the two largest perpendicular viable diameters, mm²; nodes: long × short axis."""
    if m.is_node:
        short = recist_value(m)
        if short is None:
            return None
        return short * (m.longest_diameter_mm if m.longest_diameter_mm is not None else short)
    longest = m.viable_diameter_mm
    if longest is None and m.too_small:
        longest = TOO_SMALL_TO_MEASURE_MM
    if longest is None:
        return None
    perpendicular = m.viable_perpendicular_mm if m.viable_perpendicular_mm is not None else longest
    return longest * perpendicular


def easl_rule(*, exclude_treated: bool = False) -> SumRule:
    """EASL 2001: PR −50 % of viable area vs baseline; PD +25 % vs nadir."""
    return SumRule(
        criterion="easl", measure_code="sum-of-viable-products", measure_unit="mm2",
        value=viable_area, node_axis=node_axis,
        pr_decrease=Decimal("0.50"), pd_increase=Decimal("0.25"), pd_min_increase=None,
        continued_pr=False, exclude_treated=exclude_treated, source="Bruix 2001 (EASL)",
    )


def assess_easl(series: Series, *, exclude_treated: bool = False) -> CriterionResult:
    """EASL time-point responses (Bruix 2001; WHO bidimensional rules on viable tumour)."""
    check_viable_baseline(series, "EASL")
    result = assess_sum_of_measures(series, easl_rule(exclude_treated=exclude_treated))
    assessments = (series.baseline, *series.follow_ups)
    approximated = sorted({a.date.isoformat() for a in assessments for m in a.lesions
                           if m.viable_diameter_mm is not None and m.viable_perpendicular_mm is None
                           and not m.is_node})
    if approximated:
        note = ("EASL: perpendicular viable diameter missing on " + ", ".join(approximated)
                + "; taken equal to the longest viable diameter")
        return CriterionResult(result.criterion, result.baseline_date, result.baseline_measure,
                               result.measure_code, result.measure_unit, result.visits,
                               (*result.notes, note), final_nadir_date=result.final_nadir_date)
    return result
