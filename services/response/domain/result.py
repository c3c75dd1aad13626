"""What every criterion returns: one response per follow-up assessment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

__all__ = ["CriterionResult", "VisitResponse", "percent_change"]

_Date = date

_HUNDRED = Decimal(100)


def percent_change(value: Decimal, reference: Decimal) -> Decimal | None:
    """(value − reference) / reference × 100, exact; ``None`` when the reference is 0."""
    if reference == 0:
        return None
    return (value - reference) * _HUNDRED / reference


@dataclass(frozen=True)
class VisitResponse:
    """The response at one follow-up assessment.

    ``overall`` is the criterion's time-point response; ``vs_baseline`` and ``vs_nadir`` the
    category the same visit gets when judged against the baseline alone or the nadir alone
    (Rozenblum et al. Table 1 "response compared to baseline / nadir"). ``measure`` is the quantity the
    criterion uses (sum of diameters, sum of products, SULpeak), ``None`` when not evaluable.
    """

    date: _Date
    overall: str
    vs_baseline: str
    vs_nadir: str
    measure_code: str
    measure: Decimal | None
    measure_unit: str
    percent_vs_baseline: Decimal | None
    percent_vs_nadir: Decimal | None
    nadir: Decimal | None
    nadir_date: _Date | None
    target: str | None = None
    non_target: str | None = None
    new_lesions: tuple[str, ...] = ()
    treated_lesions: tuple[str, ...] = ()
    extra: tuple[tuple[str, Decimal | None], ...] = ()
    notes: tuple[str, ...] = ()
    #: ``overall`` is a response carried on from an earlier PR/CR although this visit's
    #: measurement alone is SD (EORTC RECIST FAQ); it cannot confirm a response.
    continued_response: bool = False


@dataclass(frozen=True)
class CriterionResult:
    """All visits of one criterion plus what the baseline looked like."""

    criterion: str
    baseline_date: date
    baseline_measure: Decimal | None
    measure_code: str
    measure_unit: str
    visits: tuple[VisitResponse, ...]
    notes: tuple[str, ...] = field(default=())
    #: The nadir date the criterion tracked to the end (an NE or non-comparable visit never
    #: sets it); ``None`` lets :attr:`nadir_date` take the smallest measure.
    final_nadir_date: date | None = None

    @property
    def nadir_date(self) -> date:
        """Date of the nadir after the last visit (baseline included), for the case-report form."""
        if self.final_nadir_date is not None:
            return self.final_nadir_date
        best_date, best = self.baseline_date, self.baseline_measure
        for v in self.visits:
            if v.measure is not None and best is not None and v.measure < best:
                best_date, best = v.date, v.measure
        return best_date
