"""Prior doses of a patient's earlier SIRT treatments, from the records in the store.

Lung dose adds up over treatments (EANM 2022: 30 Gy per treatment, 50 Gy cumulative), so a new
plan needs the lung dose of every earlier treatment. Each earlier treatment is known by its day
(the plan's treatment time, the post-treatment image's administration time). Per treatment:

- the post-treatment dosimetry (Y-90 PET or bremsstrahlung SPECT) is what was delivered, so it
  is used when there is one; otherwise the plan (what was predicted);
- two records of the same kind for the same treatment whose lung doses differ by more than
  :data:`AGREEMENT_TOLERANCE_GY` are a conflict: no record is picked, :class:`PriorRecordConflict`
  names them;
- records dated on or after the day of the new treatment are not prior (a re-run of the same
  plan, or a later one), and records without a date cannot be placed: both are listed as
  ignored, with the reason.

The normal-liver dose of each earlier treatment is reported beside the new plan (from the same
kind of record as the lung dose when it gives one, else from the other).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.dosimetry.domain.errors import DosimetryInputError

__all__ = ["AGREEMENT_TOLERANCE_GY", "DoseRecord", "PriorDoses", "PriorRecordConflict", "PriorTreatment",
           "prior_doses"]

#: Lung doses of two records of one treatment that differ by more than this conflict.
AGREEMENT_TOLERANCE_GY = 0.5


@dataclass(frozen=True)
class DoseRecord:
    """One stored record: a plan (``kind`` ``plan``) or a post-treatment dosimetry
    (``post-treatment``); ``reference`` is its id, opaque here."""

    reference: str
    kind: str
    treatment_date: date | None
    lung_gy: float | None
    normal_liver_gy: float | None


@dataclass(frozen=True)
class PriorTreatment:
    treatment_date: date
    source: str
    lung_gy: float
    normal_liver_gy: float | None
    records: tuple[str, ...]


@dataclass(frozen=True)
class PriorDoses:
    treatments: tuple[PriorTreatment, ...]
    #: (record, why it was not used)
    ignored: tuple[tuple[str, str], ...]

    @property
    def lung_gy(self) -> float:
        return sum(t.lung_gy for t in self.treatments)

    @property
    def records(self) -> tuple[str, ...]:
        return tuple(r for t in self.treatments for r in t.records)


class PriorRecordConflict(DosimetryInputError):
    """Records of one treatment disagree: the planner will not choose between them."""

    def __init__(self, day: date, records: tuple[DoseRecord, ...]) -> None:
        listed = "; ".join(f"{r.reference} ({r.kind}) {r.lung_gy:g} Gy" for r in records)
        super().__init__("patient", f"the records of the treatment of {day.isoformat()} give different lung doses "
                                    f"({listed}): correct or retire one of them, or give priorLungDoseGy without "
                                    "patient")
        self.records = tuple(r.reference for r in records)


def _agreeing(day: date, records: list[DoseRecord]) -> list[DoseRecord]:
    doses = [r.lung_gy for r in records if r.lung_gy is not None]
    if doses and max(doses) - min(doses) > AGREEMENT_TOLERANCE_GY:
        raise PriorRecordConflict(day, tuple(r for r in records if r.lung_gy is not None))
    return records


def _treatment(day: date, records: list[DoseRecord]) -> PriorTreatment | None:
    by_kind = {kind: _agreeing(day, [r for r in records if r.kind == kind]) for kind in ("post-treatment", "plan")}
    for kind in ("post-treatment", "plan"):
        chosen = [r for r in by_kind[kind] if r.lung_gy is not None]
        if not chosen:
            continue
        other = "plan" if kind == "post-treatment" else "post-treatment"
        liver = ([r.normal_liver_gy for r in chosen if r.normal_liver_gy is not None]
                 or [r.normal_liver_gy for r in by_kind[other] if r.normal_liver_gy is not None])
        lung = chosen[0].lung_gy
        assert lung is not None
        return PriorTreatment(day, kind, lung, liver[0] if liver else None, tuple(r.reference for r in chosen))
    return None


def prior_doses(records: list[DoseRecord], before: date | None = None) -> PriorDoses:
    """The earlier treatments in ``records`` (module doc), oldest first."""
    ignored: list[tuple[str, str]] = []
    days: dict[date, list[DoseRecord]] = {}
    for r in sorted(records, key=lambda r: r.reference):
        if r.treatment_date is None:
            ignored.append((r.reference, "no treatment or administration date: cannot be placed in time"))
        elif before is not None and r.treatment_date >= before:
            ignored.append((r.reference, f"dated {r.treatment_date.isoformat()}, not before this treatment"))
        else:
            days.setdefault(r.treatment_date, []).append(r)
    treatments = []
    for day in sorted(days):
        treatment = _treatment(day, days[day])
        if treatment is None:
            ignored.extend((r.reference, "no lung dose") for r in days[day])
        else:
            treatments.append(treatment)
    return PriorDoses(tuple(treatments), tuple(ignored))
