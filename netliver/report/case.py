"""One patient's case as typed rows, read from the FHIR resources the services wrote.

Every value here is copied from a stored resource (with its unit); the only arithmetic is the
per-lesion percentage change of a diameter against that lesion's first measurement, which the
spider and waterfall plots draw (RECIST 1.1, Eisenhauer et al. 2009, §4.3, measures response on
the sum; the per-lesion course is a picture of the same measurements, not a response category).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netliver.fhir.codesystems import (
    LESION_ROLE_SYSTEM,
    LOINC,
    OBSERVATION_CODE_SYSTEM,
    RESPONSE_SYSTEM,
    SNOMED,
    STATUS_SYSTEM,
    THERAPY_SYSTEM,
)
from netliver.fhir.sampled_dvh import report_dvh
from netliver.report.dose_records import (
    DoseComparison,
    DoseResponse,
    dose_comparison,
    dose_response,
)
from netliver.report.fhir_values import (
    CRITERIA as _CRITERIA,
)
from netliver.report.fhir_values import (
    Quantity,
    _code,
    _codes,
    _components,
    _date,
    _quantity,
    _ref,
)

__all__ = [
    "STATUS_LABELS",
    "Case",
    "CriterionCourse",
    "DoseReport",
    "EligibilityRow",
    "Grade",
    "LesionPoint",
    "MarkerPoint",
    "PatientSummary",
    "PlanDose",
    "PlanValue",
    "Quantity",
    "Reason",
    "SirtPlan",
    "Visit",
    "VoiDose",
    "build_case",
]

#: status code → (label, icon): the page shows both, never colour alone.
STATUS_LABELS: dict[str, tuple[str, str]] = {
    "eligible": ("Eligible", "✔"),
    "eligible-with-caution": ("Eligible with caution", "⚠"),
    "ineligible": ("Ineligible", "✖"),
    "insufficient-data": ("Insufficient data", "?"),
}
#: Therapies in the contract's order (the table always has these 13 rows).
THERAPY_ORDER = ("surgical-resection", "liver-transplant", "ablation-rfa", "ablation-mwa", "ablation-laser",
                 "ablation-cryo", "ablation-ire", "tae", "ctace", "deb-tace", "sirt", "prrt", "ia-prrt")
#: Which reasons decide a status (kind · result in the reason's bracket).
_DECIDING = {"ineligible": {("absolute", "met"), ("indication", "not-met")},
             "eligible-with-caution": {("relative", "met"), ("warning", "met")},
             "insufficient-data": {("absolute", "unknown"), ("indication", "unknown"), ("relative", "unknown")},
             "eligible": {("indication", "met")}}
_REASON = re.compile(r"^\[(?P<id>[^·\]]+?) · (?P<kind>[\w-]+) · (?P<result>[\w-]+)\] (?P<body>.*)$", re.S)
#: Voxel metric codes → column names, in the table's order.
DOSE_METRICS = {"dose-mean": "Dmean", "dose-d50": "D50", "dose-d70": "D70", "dose-d90": "D90",
                "dose-v100": "V100", "dose-v120": "V120", "dose-min": "Dmin", "dose-max": "Dmax",
                "bed-mean": "BED", "eqd2-mean": "EQD2"}
#: LOINC codes of the tumour markers drawn over time.
MARKERS = {"9811-1": "Chromogranin A", "1695-6": "5-HIAA (24 h urine)"}
_LONGEST, _SHORT_AXIS, _TUMOR_SIZE, _NODE = "33728-7", "103340004", "21889-1", "59441001"


@dataclass(frozen=True)
class Reason:
    rule_id: str
    kind: str
    result: str
    text: str
    source: str
    deciding: bool


@dataclass(frozen=True)
class EligibilityRow:
    therapy: str
    label: str
    status: str
    reasons: tuple[Reason, ...]
    missing: tuple[str, ...]
    notes: tuple[str, ...]
    effective: str
    resource: str

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, (self.status, "·"))[0]

    @property
    def icon(self) -> str:
        return STATUS_LABELS.get(self.status, (self.status, "·"))[1]

    @property
    def deciding(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.deciding)


@dataclass(frozen=True)
class PlanValue:
    name: str
    label: str
    value: str


@dataclass(frozen=True)
class PlanDose:
    """A predicted dose beside the target or limit the plan was checked against (when stored)."""

    what: str
    predicted: Quantity
    limit: Quantity | None
    #: ``maximum`` (a limit) or ``minimum`` (a target); where the value came from.
    kind: str
    source: str


@dataclass(frozen=True)
class SirtPlan:
    resource: str
    effective: str
    method: str
    activity: Quantity | None
    doses: tuple[PlanDose, ...]
    limiting_factor: str
    status: str
    warnings: tuple[str, ...]
    values: tuple[PlanValue, ...]
    #: Whether the plan Observation stores the limits it was checked against (older plans do not).
    limits_recorded: bool = False


@dataclass(frozen=True)
class VoiDose:
    name: str
    label: str
    metrics: Mapping[str, Quantity]
    volume: Quantity | None
    mass: Quantity | None
    resource: str


@dataclass(frozen=True)
class DoseReport:
    resource: str
    effective: str
    title: str
    method: str
    conclusion: str
    vois: tuple[VoiDose, ...]
    #: The sampled cumulative DVH stored with the report: VOI name → ((volume %, Dx Gy), ...).
    curves: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)

    def curve_rows(self, step_percent: float = 5.0) -> list[tuple[float, list[float | None]]]:
        """(volume %, Dx of each VOI in :attr:`curves` order) every ``step_percent`` of volume."""
        names = list(self.curves)
        levels = sorted({v for points in self.curves.values() for v, _ in points
                         if abs(v / step_percent - round(v / step_percent)) < 1e-9})
        lookup = {name: dict(points) for name, points in self.curves.items()}
        return [(level, [lookup[name].get(level) for name in names]) for level in levels]


@dataclass(frozen=True)
class Visit:
    date: str
    overall: str
    vs_baseline: str
    vs_nadir: str
    measure: Quantity | None
    percent_baseline: Quantity | None
    percent_nadir: Quantity | None
    target: str
    non_target: str
    new_lesions: bool | None
    notes: tuple[str, ...]
    resource: str


@dataclass(frozen=True)
class CriterionCourse:
    criterion: str
    label: str
    visits: tuple[Visit, ...]
    best: str


@dataclass(frozen=True)
class LesionPoint:
    lesion: str
    label: str
    role: str
    date: str
    size: Quantity
    resource: str


@dataclass(frozen=True)
class MarkerPoint:
    marker: str
    date: str
    value: Quantity
    resource: str


@dataclass(frozen=True)
class Grade:
    term: str
    grade: int
    date: str
    value: Quantity | None
    reference: Quantity | None
    resource: str


@dataclass(frozen=True)
class PatientSummary:
    id: str
    name: str
    birth_date: str
    gender: str


@dataclass(frozen=True)
class Case:
    patient: PatientSummary
    eligibility: tuple[EligibilityRow, ...] = ()
    plans: tuple[SirtPlan, ...] = ()
    doses: tuple[DoseReport, ...] = ()
    courses: tuple[CriterionCourse, ...] = ()
    lesions: tuple[LesionPoint, ...] = ()
    markers: tuple[MarkerPoint, ...] = ()
    grades: tuple[Grade, ...] = ()
    notes: tuple[str, ...] = field(default=())
    comparisons: tuple[DoseComparison, ...] = ()
    dose_responses: tuple[DoseResponse, ...] = ()

    def lesion_series(self) -> dict[str, list[LesionPoint]]:
        """Each target lesion's measurements in date order."""
        series: dict[str, list[LesionPoint]] = {}
        for point in sorted(self.lesions, key=lambda p: p.date):
            if point.role == "target":
                series.setdefault(point.lesion, []).append(point)
        return series

    def lesion_changes(self) -> dict[str, list[tuple[str, float]]]:
        """Each target lesion's (date, % change of its size against its first measurement)."""
        out: dict[str, list[tuple[str, float]]] = {}
        for lesion, points in self.lesion_series().items():
            first = points[0].size.value
            if first > 0:
                out[lesion] = [(p.date, round(100.0 * (p.size.value - first) / first, 1)) for p in points]
        return out

    def best_changes(self) -> list[tuple[str, float]]:
        """Each target lesion's best (lowest) % change after its first measurement, lowest last."""
        best = [(lesion, min(c for _, c in changes[1:])) for lesion, changes in self.lesion_changes().items()
                if len(changes) > 1]
        return sorted(best, key=lambda item: (-item[1], item[0]))


# ------------------------------------------------------------------------------ readers ----

def _reason(text: str, status: str) -> Reason | None:
    match = _REASON.match(text)
    if not match:
        return None
    body, _, source = match["body"].partition(". Source: ")
    source = source.split(". Sources disagree")[0].rstrip(".")
    deciding = (match["kind"], match["result"]) in _DECIDING.get(status, set())
    return Reason(match["id"].strip(), match["kind"], match["result"], body.strip(), source, deciding)


def eligibility_row(obs: Mapping[str, Any]) -> EligibilityRow:
    status = _code(obs.get("valueCodeableConcept"), STATUS_SYSTEM)
    coding: Mapping[str, Any] = next((c for c in (obs.get("code") or {}).get("coding", []) if c.get("system") == THERAPY_SYSTEM), {})
    reasons, notes = [], []
    for note in obs.get("note") or []:
        text = str(note.get("text", ""))
        reason = _reason(text, status)
        if reason:
            reasons.append(reason)
        elif not text.startswith("Missing inputs"):
            notes.append(text.removeprefix("Note: "))
    missing = tuple(str((c.get("code") or {}).get("text") or _code(c.get("code"))) for c in obs.get("component") or []
                    if c.get("dataAbsentReason"))
    return EligibilityRow(coding.get("code", ""), coding.get("display") or coding.get("code", ""), status,
                          tuple(reasons), missing, tuple(notes), _date(obs), _ref(obs))


def sirt_plan(obs: Mapping[str, Any]) -> SirtPlan:
    comps = _components(obs)

    def q(name: str) -> Quantity | None:
        return _quantity((comps.get(name) or {}).get("valueQuantity"))

    def s(name: str) -> str:
        return str((comps.get(name) or {}).get("valueString", ""))

    def dose(what: str, predicted: str, limit: str, kind: str) -> PlanDose | None:
        value = q(predicted)
        source = str(((comps.get(limit) or {}).get("code") or {}).get("text", ""))
        return PlanDose(what, value, q(limit), kind, source) if value is not None else None

    found = (dose("Tumour", "tumorDoseGy", "tumorTargetGy", "minimum"),
             dose("Perfused liver", "perfusedLiverDoseGy", "perfusedTargetGy", "minimum"),
             dose("Normal liver", "normalLiverDoseGy", "normalLiverLimitGy", "maximum"),
             dose("Lung", "lungDoseGy", "lungLimitGy", "maximum"),
             dose("Lung, cumulative", "cumulativeLungDoseGy", "cumulativeLungLimitGy", "maximum"))
    values = []
    for name, comp in comps.items():
        quantity = _quantity(comp.get("valueQuantity"))
        shown = quantity.text(4 if quantity.unit in {"GBq", "1"} else 2) if quantity else str(comp.get("valueString", ""))
        label = _code_display(comp.get("code")) or name
        values.append(PlanValue(name, label, shown))
    return SirtPlan(_ref(obs), _date(obs), str((obs.get("method") or {}).get("text", "")),
                    _quantity(obs.get("valueQuantity")), tuple(d for d in found if d is not None),
                    s("limitingFactor"), s("status"), tuple(str(n.get("text", "")) for n in obs.get("note") or []),
                    tuple(values), limits_recorded=any(k in comps for k in ("lungLimitGy", "cumulativeLungLimitGy")))


def _code_display(concept: Any) -> str:
    if not isinstance(concept, Mapping):
        return ""
    coding = (concept.get("coding") or [{}])[0]
    return str(coding.get("display") or concept.get("text") or "")


def voi_dose(obs: Mapping[str, Any]) -> VoiDose:
    metrics: dict[str, Quantity] = {}
    for comp in obs.get("component") or []:
        name = DOSE_METRICS.get(_code(comp.get("code"), OBSERVATION_CODE_SYSTEM))
        value = _quantity(comp.get("valueQuantity"))
        if name and value:
            metrics[name] = value
    comps = _components(obs)
    label = str((obs.get("bodySite") or {}).get("text", ""))
    name = str((obs.get("code") or {}).get("text", "")).removeprefix("Absorbed dose in ") or label
    return VoiDose(name, label, metrics, _quantity((comps.get("VOI volume") or {}).get("valueQuantity")),
                   _quantity((comps.get("VOI mass") or {}).get("valueQuantity")), _ref(obs))


def dose_report(report: Mapping[str, Any], by_ref: Mapping[str, Mapping[str, Any]]) -> DoseReport:
    vois = [voi_dose(by_ref[r["reference"]]) for r in report.get("result") or [] if r.get("reference") in by_ref]
    method = next((str((by_ref[r["reference"]].get("method") or {}).get("text", "")) for r in report.get("result") or []
                   if r.get("reference") in by_ref), "")
    title = _code_display(report.get("code")) or "Dosimetry report"
    return DoseReport(_ref(report), _date(report), title, method, str(report.get("conclusion", "")), tuple(vois),
                      report_dvh(report))


def _category_code(comp: Mapping[str, Any] | None) -> str:
    return _code((comp or {}).get("valueCodeableConcept")) if comp else ""


def visit(obs: Mapping[str, Any]) -> Visit:
    comps = _components(obs)
    measure = next((_quantity(c.get("valueQuantity")) for k, c in comps.items()
                    if k in {"sum-of-diameters", "sum-viable-diameters", "sul-peak", "sum-longest-diameters"}), None)
    if measure is None:
        measure = next((_quantity(c.get("valueQuantity")) for k, c in comps.items() if k.startswith("sum")), None)
    new = comps.get("new-lesions")
    return Visit(_date(obs), _code(obs.get("valueCodeableConcept")), _category_code(comps.get("vs-baseline")),
                 _category_code(comps.get("vs-nadir")), measure,
                 _quantity((comps.get("percent-change-baseline") or {}).get("valueQuantity")),
                 _quantity((comps.get("percent-change-nadir") or {}).get("valueQuantity")),
                 _category_code(comps.get("target-response")), _category_code(comps.get("non-target-response")),
                 new.get("valueBoolean") if new else None,
                 tuple(str(n.get("text", "")) for n in obs.get("note") or []), _ref(obs))


def _courses(observations: Iterable[Mapping[str, Any]]) -> tuple[CriterionCourse, ...]:
    visits: dict[str, dict[str, Visit]] = {}
    best: dict[str, str] = {}
    for obs in observations:
        code = _code(obs.get("code"), RESPONSE_SYSTEM)
        criterion = _code(obs.get("method"), RESPONSE_SYSTEM)
        if code == "tumor-response" and criterion:
            v = visit(obs)
            visits.setdefault(criterion, {})[v.date] = v  # one row per date, the last written wins
        elif code == "best-overall-response" and criterion:
            best[criterion] = _code(obs.get("valueCodeableConcept"))
    order = [c for c in _CRITERIA if c in visits] + sorted(set(visits) - set(_CRITERIA))
    return tuple(CriterionCourse(c, _CRITERIA.get(c, c), tuple(sorted(visits[c].values(), key=lambda v: v.date)),
                                 best.get(c, "")) for c in order)


def _lesion_points(observations: Iterable[Mapping[str, Any]],
                   structures: Mapping[str, Mapping[str, Any]]) -> tuple[LesionPoint, ...]:
    points = []
    for obs in observations:
        if _TUMOR_SIZE not in _codes(obs.get("code"), LOINC) or not obs.get("focus"):
            continue
        lesion = str(obs["focus"][0].get("reference", ""))
        structure = structures.get(lesion, {})
        node = _NODE in _codes(structure.get("location"), SNOMED) or _NODE in _codes(structure.get("morphology"), SNOMED)
        comps = _components(obs)
        size = _quantity((comps.get(_SHORT_AXIS if node else _LONGEST) or {}).get("valueQuantity"))
        role = next((_code(c, LESION_ROLE_SYSTEM) for c in obs.get("category") or [] if _code(c, LESION_ROLE_SYSTEM)), "")
        if size is None:
            continue
        label = str((structure.get("location") or {}).get("text") or lesion.removeprefix("BodyStructure/"))
        points.append(LesionPoint(lesion.removeprefix("BodyStructure/"), label + (" (short axis)" if node else ""),
                                  role, _date(obs), size, _ref(obs)))
    return tuple(sorted(points, key=lambda p: (p.date, p.lesion)))


def _grade(obs: Mapping[str, Any]) -> Grade:
    comps = _components(obs)
    term = next((str((c.get("valueCodeableConcept") or {}).get("text", "")) for c in obs.get("component") or []
                 if _code(c.get("code")) == "ctcae-term"), "")
    return Grade(term, int(obs.get("valueInteger", 0)), _date(obs),
                 _quantity((comps.get("lab-value") or {}).get("valueQuantity")),
                 _quantity((comps.get("reference-limit") or {}).get("valueQuantity")), _ref(obs))


def _patient(resource: Mapping[str, Any]) -> PatientSummary:
    names = resource.get("name") or [{}]
    name = names[0].get("text") or " ".join([*names[0].get("given", []), names[0].get("family", "")]).strip()
    return PatientSummary(str(resource.get("id", "")), name or str(resource.get("id", "")),
                          str(resource.get("birthDate", "")), str(resource.get("gender", "")))


def build_case(patient: Mapping[str, Any], resources: Iterable[Mapping[str, Any]]) -> Case:
    """The case of ``patient`` from its compartment's resources (any order, any mix)."""
    items = list(resources)
    by_ref = {_ref(r): r for r in items}
    observations = [r for r in items if r.get("resourceType") == "Observation"]
    structures = {_ref(r): r for r in items if r.get("resourceType") == "BodyStructure"}
    newest: dict[str, Mapping[str, Any]] = {}
    for obs in observations:
        therapy = _code(obs.get("code"), THERAPY_SYSTEM)
        if not therapy or not _code(obs.get("valueCodeableConcept"), STATUS_SYSTEM):
            continue
        if therapy not in newest or (_date(obs), obs.get("id", "")) > (_date(newest[therapy]), newest[therapy].get("id", "")):
            newest[therapy] = obs
    rows = tuple(eligibility_row(newest[t]) for t in THERAPY_ORDER if t in newest)
    plans = tuple(sirt_plan(o) for o in observations if _code(o.get("code"), OBSERVATION_CODE_SYSTEM) == "sirt-activity-plan")
    reports = [r for r in items if r.get("resourceType") == "DiagnosticReport"
               and "voxel-dosimetry-report" in _codes(r.get("code"), OBSERVATION_CODE_SYSTEM)]
    markers = tuple(sorted((MarkerPoint(MARKERS[c], _date(o), q, _ref(o)) for o in observations
                            for c in _codes(o.get("code"), LOINC) if c in MARKERS
                            for q in [_quantity(o.get("valueQuantity"))] if q is not None),
                           key=lambda m: (m.marker, m.date)))
    # Each criterion's evaluation writes the same grades again: one row per term and date.
    unique = {(g.term, g.date): g for g in (_grade(o) for o in observations
                                            if _code(o.get("code"), RESPONSE_SYSTEM) == "ctcae-grade")}
    grades = tuple(sorted(unique.values(), key=lambda g: (-g.grade, g.term)))

    def reports_of(code: str) -> list[Mapping[str, Any]]:
        return sorted((r for r in items if r.get("resourceType") == "DiagnosticReport"
                       and code in _codes(r.get("code"), OBSERVATION_CODE_SYSTEM)), key=lambda r: (_date(r), _ref(r)))

    comparisons = tuple(dose_comparison(r, by_ref) for r in reports_of("dose-comparison-report"))
    responses = [dose_response(r, by_ref, structures) for r in reports_of("dose-response-report")]
    order = list(_CRITERIA)
    responses.sort(key=lambda d: (order.index(d.criterion) if d.criterion in order else len(order), d.effective))
    return Case(_patient(patient), rows, tuple(sorted(plans, key=lambda p: p.effective)),
                tuple(sorted((dose_report(r, by_ref) for r in reports), key=lambda d: d.effective)),
                _courses(observations), _lesion_points(observations, structures), markers, grades,
                comparisons=comparisons, dose_responses=tuple(r for r in responses if r.lesions))
