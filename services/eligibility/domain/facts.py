"""Patient facts: typed inputs with value, unit, date and source, and how they are chosen.

Readings of one input are reduced to one :class:`Fact` by :func:`newest_fact`: the newest
value by its effective date wins; several *different* values on that newest date are kept as
a conflict (reported, never averaged). :func:`fact_quality` applies the staleness policy of
the rule set (``staleness`` in ``rules/eligibility-rules.yaml``, explained in
``docs/eligibility.md``): fresh, old (used, lower confidence) or stale (treated as unknown).

The problem list, medication list and procedure history are closed-world
(docs/eligibility.md): what is not recorded is taken as absent, and every reason that relies on an
absence says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum

__all__ = [
    "FUTURE_TOLERANCE_DAYS",
    "Fact",
    "FactQuality",
    "PatientFacts",
    "Reading",
    "StalenessClass",
    "fact_quality",
    "newest_fact",
    "whole_months_between",
    "whole_years_between",
]

Value = Decimal | bool | str

#: Days a reading may be dated after the evaluation date and still be used (time zones: a
#: value taken late on the evaluation day in one zone carries the next day's date in another).
FUTURE_TOLERANCE_DAYS = 1


@dataclass(frozen=True)
class Reading:
    """One recorded value of an input (one Observation, or one Patient element).

    ``source`` is the reference of the resource that carried it (``Observation/123``).
    ``since`` is the start of an effective period (disease-state inputs).
    """

    name: str
    value: Value
    unit: str
    on: date | None
    source: str
    since: date | None = None
    comparator: str = ""  # FHIR Quantity.comparator: the value is a bound (<, <=, >, >=)
    at: datetime | None = None  # the effective instant (time zone aware) when a time of day was given


@dataclass(frozen=True)
class Fact:
    """The value of one input used by the rules."""

    name: str
    value: Value
    unit: str
    on: date | None
    sources: tuple[str, ...]
    conflict: tuple[Value, ...] = ()
    since: date | None = None
    assumed: bool = False
    comparator: str = ""

    @property
    def conflicting(self) -> bool:
        return bool(self.conflict)

    def describe(self) -> str:
        """``1.2 mg/dL (2026-11-01)`` with the conflict when there is one."""
        when = f" ({self.on.isoformat()})" if self.on else ""
        unit = "" if self.unit.startswith("{") or self.unit == "1" else f" {self.unit}"
        if self.conflict:
            values = ", ".join(_text(v) for v in (self.value, *self.conflict))
            return f"conflicting values on the same date{when}: {values}{unit}"
        assumed = " (not recorded: assumed)" if self.assumed else ""
        return f"{self.comparator}{_text(self.value)}{unit}{when}{assumed}"


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        if value == value.to_integral():
            return format(value.normalize(), "f")
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -6:
            # a converted value (49.6 µmol/L / 17.1): shown rounded, compared exact
            return "≈" + format(value.quantize(Decimal("0.000001")).normalize(), "f")
        return format(value, "f")
    return value


def newest_fact(readings: Sequence[Reading]) -> Fact:
    """Reduce readings of one input to the newest value; report same-date disagreement.

    Readings without a date rank below every dated reading. On the newest date, readings that
    all carry a time of day are ordered by it (docs/eligibility.md: the newest by
    ``effectiveDateTime`` wins); only readings at the same instant, or without a time, can conflict.
    """
    if not readings:
        raise ValueError("no readings")
    name = readings[0].name
    ranked = sorted(readings, key=lambda r: (r.on is not None, r.on or date.min), reverse=True)
    newest_on = ranked[0].on
    same_day = [r for r in ranked if r.on == newest_on]
    timed = [r.at for r in same_day if r.at is not None]
    if len(timed) == len(same_day) > 1:
        latest = max(timed)
        same_day = [r for r in same_day if r.at == latest]
    first = same_day[0]
    others: list[Value] = []
    for reading in same_day[1:]:
        differs = not _same(reading.value, first.value) or reading.comparator != first.comparator
        if differs and all(not _same(reading.value, o) for o in others):
            others.append(reading.value)
    sources = tuple(dict.fromkeys(r.source for r in same_day))
    since = next((r.since for r in same_day if r.since is not None), None)
    return Fact(name, first.value, first.unit, newest_on, sources, tuple(others), since,
                comparator=first.comparator)


def _same(a: Value, b: Value) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


class StalenessClass(Enum):
    LAB = "lab"
    PERFORMANCE = "performance"
    IMAGING = "imaging"
    DISEASE = "disease"
    PATHOLOGY = "pathology"


class FactQuality(Enum):
    FRESH = "fresh"
    OLD = "old"  # used, with lower confidence (the reason says so)
    STALE = "stale"  # treated as unknown
    CONFLICTING = "conflicting"  # treated as unknown


def fact_quality(fact: Fact, evaluated_on: date, fresh_days: int | None,
                 max_days: int | None) -> FactQuality:
    """Quality of a fact on the evaluation date under a staleness class's limits."""
    if fact.conflicting:
        return FactQuality.CONFLICTING
    if fact.on is None or fact.assumed:
        return FactQuality.FRESH
    age_days = (evaluated_on - fact.on).days
    if max_days is not None and age_days > max_days:
        return FactQuality.STALE
    if fresh_days is not None and age_days > fresh_days:
        return FactQuality.OLD
    return FactQuality.FRESH


def whole_years_between(start: date, end: date) -> int:
    """Completed years from ``start`` to ``end`` (age on a date)."""
    years = end.year - start.year
    if (end.month, end.day) < (start.month, start.day):
        years -= 1
    return years


def whole_months_between(start: date, end: date) -> int:
    """Completed calendar months from ``start`` to ``end`` (0 if ``end`` is earlier)."""
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if end.day < start.day:
        months -= 1
    return max(months, 0)


@dataclass(frozen=True)
class PatientFacts:
    """Everything the rules read about one patient, on one evaluation date.

    ``values``: measured inputs by rule-set input name (open world: absent = unknown).
    ``conditions``, ``medications``, ``prior_therapies``: code → sources of the records present
    (closed world: absent = assumed absent). ``notes``: remarks from reading the record (e.g. a
    condition matched only by its text).
    """

    patient_id: str
    evaluated_on: date
    values: Mapping[str, Fact] = field(default_factory=dict)
    conditions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    medications: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    prior_therapies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @classmethod
    def from_readings(cls, patient_id: str, evaluated_on: date, readings: Iterable[Reading],
                      *, birth_date: date | None = None, birth_source: str = "",
                      conditions: Mapping[str, tuple[str, ...]] | None = None,
                      medications: Mapping[str, tuple[str, ...]] | None = None,
                      prior_therapies: Mapping[str, tuple[str, ...]] | None = None,
                      notes: Iterable[str] = ()) -> PatientFacts:
        """Build facts from readings: newest wins, age and months of stable disease derived.

        Readings dated more than :data:`FUTURE_TOLERANCE_DAYS` after the evaluation date are
        not used (an evaluation "as of" a date cannot see later values); a note says so.
        """
        grouped: dict[str, list[Reading]] = {}
        later: list[str] = []
        for reading in readings:
            if reading.on is not None and (reading.on - evaluated_on).days > FUTURE_TOLERANCE_DAYS:
                later.append(f"{reading.source} ({reading.on.isoformat()})")
                continue
            grouped.setdefault(reading.name, []).append(reading)
        if later:
            notes = (*notes, f"Values dated after the evaluation date {evaluated_on.isoformat()} were not used: "
                             + ", ".join(dict.fromkeys(later)) + ".")
        values = {name: newest_fact(items) for name, items in grouped.items()}
        if birth_date is not None:
            age = whole_years_between(birth_date, evaluated_on)
            values["age"] = Fact("age", Decimal(age), "a", None, (birth_source,) if birth_source else ())
        state = values.get("liver_state")
        if state is not None and not state.conflicting and "liver_stable_months" not in values:
            if state.value == "progressing":
                months = 0
            elif state.since is not None:
                # stability is documented up to the assessment (effective date or period end);
                # it is not assumed to have lasted until the evaluation date. An open period
                # (start only) means "stable since, ongoing": counted to the evaluation date.
                until = state.on if state.on is not None and state.on > state.since else evaluated_on
                months = whole_months_between(state.since, min(until, evaluated_on))
            else:
                months = -1
            if months >= 0:
                values["liver_stable_months"] = Fact("liver_stable_months", Decimal(months), "mo",
                                                     state.on, state.sources)
        return cls(patient_id, evaluated_on, values, dict(conditions or {}), dict(medications or {}),
                   dict(prior_therapies or {}), tuple(notes))

    def without(self, name: str) -> PatientFacts:
        """The same facts with one measured input removed (for what-if analysis and tests)."""
        values = {k: v for k, v in self.values.items() if k != name}
        return PatientFacts(self.patient_id, self.evaluated_on, values, self.conditions,
                            self.medications, self.prior_therapies, self.notes)

    def with_condition(self, code: str, source: str = "Condition/added") -> PatientFacts:
        conditions = dict(self.conditions)
        conditions[code] = (*conditions.get(code, ()), source)
        return PatientFacts(self.patient_id, self.evaluated_on, self.values, conditions,
                            self.medications, self.prior_therapies, self.notes)

    def with_medication(self, klass: str, source: str = "MedicationStatement/added") -> PatientFacts:
        medications = dict(self.medications)
        medications[klass] = (*medications.get(klass, ()), source)
        return PatientFacts(self.patient_id, self.evaluated_on, self.values, self.conditions,
                            medications, self.prior_therapies, self.notes)
