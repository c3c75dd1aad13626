"""The dose records across treatments as typed rows: ``$dose-comparison`` (predicted versus
delivered, per VOI) and the dose-response per lesion, each value copied from its stored
Observation with its unit (read by :func:`netliver.report.case.build_case`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netliver.fhir.codesystems import OBSERVATION_CODE_SYSTEM, RESPONSE_SYSTEM
from netliver.report.fhir_values import CRITERIA as _CRITERIA
from netliver.report.fhir_values import Quantity, _code, _date, _quantity, _ref

__all__ = ["COMPARED_METRICS", "ComparedVoi", "DoseComparison", "DoseResponse", "LesionDose", "compared_voi",
           "dose_comparison", "dose_response", "lesion_dose"]

#: The metrics ``$dose-comparison`` compares: (column name, component stem, unit).
COMPARED_METRICS = (("Dmean", "dose-mean"), ("D70", "dose-d70"), ("V100", "dose-v100"))


@dataclass(frozen=True)
class ComparedVoi:
    """One VOI of a ``$dose-comparison``: per metric (Dmean, D70, V100) the predicted and
    delivered value and their difference, as stored."""

    name: str
    role: str
    predicted: Mapping[str, Quantity]
    delivered: Mapping[str, Quantity]
    difference: Mapping[str, Quantity]
    difference_percent: Quantity | None
    flagged: bool | None
    resource: str


@dataclass(frozen=True)
class DoseComparison:
    resource: str
    effective: str
    predicted: str
    delivered: str
    vois: tuple[ComparedVoi, ...]
    lung_shunt_predicted: Quantity | None
    lung_shunt_delivered: Quantity | None
    conclusion: str


@dataclass(frozen=True)
class LesionDose:
    """One lesion's absorbed dose beside its response (a ``lesion-dose-response`` Observation)."""

    lesion: str
    label: str
    dose: Quantity | None
    bed: Quantity | None
    baseline: Quantity | None
    latest: Quantity | None
    change: Quantity | None
    category: str
    resource: str


@dataclass(frozen=True)
class DoseResponse:
    resource: str
    effective: str
    criterion: str
    label: str
    lesions: tuple[LesionDose, ...]


def _results(report: Mapping[str, Any], by_ref: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [by_ref[r["reference"]] for r in report.get("result") or [] if r.get("reference") in by_ref]


def _component_quantities(obs: Mapping[str, Any]) -> dict[str, Quantity]:
    out: dict[str, Quantity] = {}
    for comp in obs.get("component") or []:
        value = _quantity(comp.get("valueQuantity"))
        code = _code(comp.get("code"), OBSERVATION_CODE_SYSTEM)
        if code and value is not None:
            out.setdefault(code, value)
    return out


def compared_voi(obs: Mapping[str, Any]) -> ComparedVoi:
    values = _component_quantities(obs)
    site = str((obs.get("bodySite") or {}).get("text", ""))
    name, _, role = site.partition(" (")
    flag = next((c.get("valueBoolean") for c in obs.get("component") or []
                 if _code(c.get("code"), OBSERVATION_CODE_SYSTEM) == "dose-discrepancy"), None)

    def pick(prefix: str, suffix: str = "") -> dict[str, Quantity]:
        return {metric: values[f"{prefix}{stem}{suffix}"] for metric, stem in COMPARED_METRICS
                if f"{prefix}{stem}{suffix}" in values}

    return ComparedVoi(name.strip(), role.rstrip(")"), pick("predicted-"), pick("delivered-"), pick("", "-difference"),
                       values.get("dose-mean-difference-percent"), flag if isinstance(flag, bool) else None, _ref(obs))


def dose_comparison(report: Mapping[str, Any], by_ref: Mapping[str, Mapping[str, Any]]) -> DoseComparison:
    """A ``$dose-comparison`` report with its VOI rows and lung shunts, as stored."""
    results = _results(report, by_ref)
    rows = tuple(compared_voi(o) for o in results if _code(o.get("code"), OBSERVATION_CODE_SYSTEM) == "dose-comparison")
    shunt = next((_component_quantities(o) for o in results
                  if _code(o.get("code"), OBSERVATION_CODE_SYSTEM) == "lung-shunt-comparison"), {})
    both = next(([str(d.get("reference", "")) for d in o.get("derivedFrom") or []][:2] for o in results
                 if len(o.get("derivedFrom") or []) >= 2), ["", ""])
    return DoseComparison(_ref(report), _date(report), both[0], both[1], rows, shunt.get("lung-shunt-predicted"),
                          shunt.get("lung-shunt-delivered"), str(report.get("conclusion", "")))


def lesion_dose(obs: Mapping[str, Any], structures: Mapping[str, Mapping[str, Any]]) -> LesionDose:
    values = _component_quantities(obs)
    lesion = str(((obs.get("focus") or [{}])[0]).get("reference", ""))
    label = str((structures.get(lesion, {}).get("location") or {}).get("text", ""))
    category = next((_code(c.get("valueCodeableConcept")) for c in obs.get("component") or []
                     if _code(c.get("code"), OBSERVATION_CODE_SYSTEM) == "lesion-response"), "")
    return LesionDose(lesion.removeprefix("BodyStructure/"), label, values.get("dose-mean"), values.get("bed-mean"),
                      values.get("lesion-baseline-size"), values.get("lesion-latest-size"),
                      values.get("lesion-size-change"), category, _ref(obs))


def dose_response(report: Mapping[str, Any], by_ref: Mapping[str, Mapping[str, Any]],
                  structures: Mapping[str, Mapping[str, Any]]) -> DoseResponse:
    """A dose-response report (one criterion) with one row per lesion, as stored."""
    results = [o for o in _results(report, by_ref)
               if _code(o.get("code"), OBSERVATION_CODE_SYSTEM) == "lesion-dose-response"]
    criterion = next((_code(o.get("method"), RESPONSE_SYSTEM) for o in results if _code(o.get("method"), RESPONSE_SYSTEM)), "")
    return DoseResponse(_ref(report), _date(report), criterion, _CRITERIA.get(criterion, criterion or "criterion not stated"),
                        tuple(lesion_dose(o, structures) for o in results))
