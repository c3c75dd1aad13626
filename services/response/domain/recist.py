"""RECIST 1.1 (Eisenhauer EA et al., Eur J Cancer 2009;45:228-247).

- §3.1.1 measurable: longest diameter ≥ 10 mm; lymph node short axis ≥ 15 mm (target),
  10-15 mm pathological non-target, < 10 mm normal.
- §4.2 at most 5 target lesions, 2 per organ; the sum of diameters (longest for non-nodal
  lesions, short axis for nodes) is the baseline sum.
- §4.3.1 CR: every non-nodal target gone and every target node < 10 mm short axis (the sum
  may stay above 0); PR: ≥ 30 % decrease from the baseline sum; PD: ≥ 20 % increase over the
  smallest sum on study (baseline included) **and** ≥ 5 mm absolute; SD otherwise.
- §4.3.2 too small to measure = 5 mm; split lesions add up; coalesced lesions count once.
- §4.3.3-§4.3.5 non-target and new lesions; §4.4.1 Tables 1-2; §4.4.2 missing lesions → NE
  unless PD is already proven.
"""

from __future__ import annotations

from decimal import Decimal

from services.response.domain.model import LesionMeasurement
from services.response.domain.result import CriterionResult
from services.response.domain.series import Series, recist_value
from services.response.domain.sum_of_measures import SumRule, assess_sum_of_measures

__all__ = ["RECIST_PD_MIN_INCREASE_MM", "assess_recist", "recist_rule"]

#: RECIST 1.1 §4.3.1: PD needs an absolute increase of at least 5 mm besides +20 %.
RECIST_PD_MIN_INCREASE_MM = Decimal(5)


def _short_axis(m: LesionMeasurement) -> Decimal | None:
    return recist_value(m) if m.is_node else m.short_axis_mm


def recist_rule(*, exclude_treated: bool = False) -> SumRule:
    """RECIST 1.1 §4.3.1 thresholds: PR −30 % vs baseline; PD +20 % and +5 mm vs nadir."""
    return SumRule(
        criterion="recist-1.1", measure_code="sum-of-diameters", measure_unit="mm",
        value=recist_value, node_axis=_short_axis,
        pr_decrease=Decimal("0.30"), pd_increase=Decimal("0.20"),
        pd_min_increase=RECIST_PD_MIN_INCREASE_MM, continued_pr=True,
        exclude_treated=exclude_treated, source="Eisenhauer 2009 (RECIST 1.1) §4.3.1",
    )


def assess_recist(series: Series, *, exclude_treated: bool = False) -> CriterionResult:
    """RECIST 1.1 time-point responses (Eisenhauer 2009 §4.3-§4.4, Tables 1-2)."""
    return assess_sum_of_measures(series, recist_rule(exclude_treated=exclude_treated))
