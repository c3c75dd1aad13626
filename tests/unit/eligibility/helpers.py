"""Shared helpers for the eligibility unit tests: facts from plain values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from decimal import Decimal

from services.eligibility.domain.facts import PatientFacts, Reading
from services.eligibility.ruleset import default_ruleset

#: Evaluation date of the pure tests; readings are dated five days before.
EVAL = date(2026, 11, 20)
RECENT = EVAL - timedelta(days=5)

CONDITION_CODES = {
    "ascites", "portal-vein-thrombosis", "bilioenteric-anastomosis", "sphincterotomy",
    "biliary-dilatation", "irreversible-coagulopathy", "contrast-allergy", "cardiac-arrhythmia",
    "pre-existing-liver-disease", "prior-liver-radiation", "gi-reflux-on-maa",
    "anesthesia-contraindicated",
}
MEDICATION_CLASSES = {"anti-vegf-tki", "chemotherapy", "somatostatin-analogue"}
THERAPY_PREFIX = "therapy:"  # flags "therapy:sirt" = a completed SIRT Procedure


def value(raw: object) -> Decimal | bool | str:
    if isinstance(raw, bool | str):
        return raw
    if isinstance(raw, int | float):
        return Decimal(str(raw))
    raise TypeError(raw)


def make_facts(values: Mapping[str, object] | None = None, *, on: date = RECENT,
               flags: Iterable[str] = (), evaluated_on: date = EVAL) -> PatientFacts:
    """Facts from ``{input: value}``; ``flags`` are condition codes or medication classes present."""
    rules = default_ruleset()
    readings = [Reading(name, value(raw), rules.inputs[name].unit, on, f"Observation/{name}")
                for name, raw in (values or {}).items()]
    flags = list(flags)
    return PatientFacts.from_readings(
        "p1", evaluated_on, readings,
        conditions={f: (f"Condition/{f}",) for f in flags if f in CONDITION_CODES},
        medications={f: (f"MedicationStatement/{f}",) for f in flags if f in MEDICATION_CLASSES},
        prior_therapies={f[len(THERAPY_PREFIX):]: (f"Procedure/{f[len(THERAPY_PREFIX):]}",)
                         for f in flags if f.startswith(THERAPY_PREFIX)},
    )
