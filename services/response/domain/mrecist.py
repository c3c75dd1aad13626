"""mRECIST for liver tumours (Lencioni R, Llovet JM. Semin Liver Dis 2010;30:52-60).

The measure is the longest diameter of the **viable** (arterially enhancing) part of each
target lesion; targets must be measurable (≥ 10 mm) and enhancing at baseline.
CR: intratumoral arterial enhancement gone in every target; PR: ≥ 30 % decrease of the sum of
viable diameters from baseline; PD: ≥ 20 % increase over the smallest sum of viable diameters
since treatment started (no absolute minimum in the 2010 paper); SD otherwise. Lymph nodes are
measured by short axis as in RECIST 1.1. Designed for the response to liver-directed therapy,
so lesions treated locally are measured by default.
"""

from __future__ import annotations

from decimal import Decimal

from services.response.domain.model import (
    TOO_SMALL_TO_MEASURE_MM,
    LesionMeasurement,
    ResponseInputError,
)
from services.response.domain.result import CriterionResult
from services.response.domain.series import Series, recist_value
from services.response.domain.sum_of_measures import SumRule, assess_sum_of_measures

__all__ = ["assess_mrecist", "mrecist_rule", "node_axis", "viable_value"]


def viable_value(m: LesionMeasurement) -> Decimal | None:
    """Viable (enhancing) longest diameter; nodes by short axis (RECIST 1.1 §4.3.2)."""
    if m.is_node:
        return recist_value(m)
    if m.viable_diameter_mm is None and m.too_small:
        return TOO_SMALL_TO_MEASURE_MM
    return m.viable_diameter_mm


def node_axis(m: LesionMeasurement) -> Decimal | None:
    """Nodes keep their RECIST short axis under the viable-tumour criteria (mRECIST, EASL)."""
    return recist_value(m) if m.is_node else m.short_axis_mm


def mrecist_rule(*, exclude_treated: bool = False) -> SumRule:
    """Lencioni & Llovet 2010, Table 2: PR −30 % vs baseline; PD +20 % vs nadir."""
    return SumRule(
        criterion="mrecist", measure_code="sum-of-viable-diameters", measure_unit="mm",
        value=viable_value, node_axis=node_axis,
        pr_decrease=Decimal("0.30"), pd_increase=Decimal("0.20"), pd_min_increase=None,
        continued_pr=True, exclude_treated=exclude_treated,
        source="Lencioni & Llovet 2010 (mRECIST) Table 2",
    )


def check_viable_baseline(series: Series, criterion: str) -> None:
    """Lencioni & Llovet 2010: a target must show intratumoral arterial enhancement at baseline."""
    for t in series.targets:
        if t.is_node:
            continue
        if t.viable_diameter_mm is None or t.viable_diameter_mm <= 0:
            raise ResponseInputError(
                f"target lesion {t.lesion_id!r} has no viable (enhancing) diameter at baseline, "
                f"which {criterion} needs (Lencioni & Llovet 2010)", t.source)


def assess_mrecist(series: Series, *, exclude_treated: bool = False) -> CriterionResult:
    """mRECIST time-point responses (Lencioni & Llovet 2010; overall table as RECIST 1.1)."""
    check_viable_baseline(series, "mRECIST")
    return assess_sum_of_measures(series, mrecist_rule(exclude_treated=exclude_treated))
