"""Response results → FHIR: the per-visit Observations, markers, CTCAE grades, case-report form.

Output (public contract, "Tumour response"): a ``collection`` Bundle of response Observations
(codes from RESPONSE_SYSTEM with NCI Thesaurus equivalents), biochemical-response and CTCAE
grade Observations, and the case-report form DiagnosticReport; the resources to write add a
``Provenance``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from netliver.fhir.builders import (
    canonical_json,
    codeable,
    coding,
    deterministic_id,
    provenance,
    quantity,
    reference,
)
from netliver.fhir.codesystems import (
    CANONICAL_BASE,
    LOINC,
    NCIT,
    OBSERVATION_CODE_SYSTEM,
    RESPONSE_SYSTEM,
    SNOMED,
    THERAPY_SYSTEM,
)
from services.response.domain.biochemical import MarkerResponse
from services.response.domain.criteria import Evaluation
from services.response.domain.ctcae import CtcaeGrade
from services.response.domain.dose_response import LesionDoseResponse, dose_response_table
from services.response.domain.model import (
    Role,
)
from services.response.domain.result import VisitResponse
from services.response.fhir_codes import (
    COARSE,
    CRF_TREATMENT,
    CRITERION_DISPLAY,
    DISEASE_STATUS,
    IMAGING_PROCEDURE_URL,
    MEASURE_UNIT,
    MEDDRA,
    MODALITY_CODE,
    PERCENT_STEP,
    PREVIOUS_TREATMENT_URL,
    RESPONSE_DISPLAY,
    RESPONSE_NCIT,
)
from services.response.fhir_in import ParsedInput

__all__ = ["CaseReportForm", "build_outputs"]


def _category(code: str) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [coding(RESPONSE_SYSTEM, code, RESPONSE_DISPLAY.get(code))]}
    ncit = RESPONSE_NCIT.get(code)
    if ncit:
        concept["coding"].append(coding(NCIT, *ncit))
    concept["text"] = RESPONSE_DISPLAY.get(code, code)
    return concept


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text not in ("-0",) else "0"


def _percent(value: Decimal) -> str:
    return _number(value.quantize(PERCENT_STEP))


def _component(code: str, **value: Any) -> dict[str, Any]:
    return {"code": codeable(RESPONSE_SYSTEM, code), **value}


def _visit_components(v: VisitResponse) -> list[dict[str, Any]]:
    comps = [
        _component("vs-baseline", valueCodeableConcept=_category(v.vs_baseline)),
        _component("vs-nadir", valueCodeableConcept=_category(v.vs_nadir)),
        _component("overall", valueCodeableConcept=_category(v.overall)),
    ]
    unit = MEASURE_UNIT.get(v.measure_unit, (v.measure_unit, v.measure_unit))
    if v.measure is not None:
        comps.append(_component(v.measure_code, valueQuantity=quantity(_number(v.measure), *unit)))
    if v.percent_vs_baseline is not None:
        comps.append(_component("percent-change-baseline", valueQuantity=quantity(_percent(v.percent_vs_baseline), "%")))
    if v.percent_vs_nadir is not None:
        comps.append(_component("percent-change-nadir", valueQuantity=quantity(_percent(v.percent_vs_nadir), "%")))
    if v.nadir is not None:
        comps.append(_component("nadir", valueQuantity=quantity(_number(v.nadir), *unit)))
    if v.nadir_date is not None:
        comps.append(_component("nadir-date", valueDateTime=v.nadir_date.isoformat()))
    if v.target is not None:
        comps.append(_component("target-response", valueCodeableConcept=_category(v.target)))
    if v.non_target is not None:
        comps.append(_component("non-target-response", valueCodeableConcept=_category(v.non_target)))
    comps.append(_component("new-lesions", valueBoolean=bool(v.new_lesions)))
    for lesion in v.treated_lesions:
        comps.append(_component("treated-lesion", valueString=lesion))
    for name, number in v.extra:
        if number is None:
            continue
        if name == "mean-attenuation":
            comps.append(_component(name, valueQuantity=quantity(_percent(number), "HU", "[hnsf'U]")))
        else:
            comps.append(_component(name, valueQuantity=quantity(_percent(number), "%")))
    coarse = COARSE.get(v.overall, "undetermined")
    comps.append({"code": codeable(LOINC, "97509-4", "Cancer disease status"),
                  "valueCodeableConcept": codeable(SNOMED, *DISEASE_STATUS[coarse])})
    return comps


@dataclass(frozen=True)
class CaseReportForm:
    """Inputs of the Rozenblum et al. Table 1 form beyond the requested criterion."""

    evaluations: Mapping[str, Evaluation | str]  # criterion → evaluation or reason not assessable


def _notes(texts: Iterable[str]) -> list[dict[str, str]]:
    return [{"text": t} for t in dict.fromkeys(texts)]


def build_outputs(parsed: ParsedInput, criterion: str, evaluation: Evaluation,
                  markers: Sequence[MarkerResponse], grades: Sequence[CtcaeGrade],
                  crf: CaseReportForm, *, settings: Mapping[str, Any], version: str,
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The collection Bundle answered to the caller and the resources to write (Provenance last)."""
    subject = reference("Patient", parsed.patient) if parsed.patient else None

    def new_id(item: str) -> str:
        return deterministic_id("response", parsed.patient, criterion, parsed.digest, item)

    def base(resource_id: str, code: dict[str, Any], when: date) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceType": "Observation", "id": resource_id, "status": "final",
                               "category": [codeable("http://terminology.hl7.org/CodeSystem/observation-category",
                                                     "imaging", "Imaging")],
                               "code": code}
        if subject:
            out["subject"] = subject
        out["effectiveDateTime"] = when.isoformat()
        return out

    method = codeable(RESPONSE_SYSTEM, criterion, CRITERION_DISPLAY[criterion])
    result = evaluation.result
    baseline_refs = parsed.lesion_refs.get(result.baseline_date, [])
    visit_obs: list[dict[str, Any]] = []
    for v in result.visits:
        obs = base(new_id(v.date.isoformat()),
                   codeable(RESPONSE_SYSTEM, "tumor-response", "Tumour response at one assessment"), v.date)
        obs["method"] = method
        obs["valueCodeableConcept"] = _category(v.overall)
        obs["component"] = _visit_components(v)
        refs = baseline_refs + parsed.lesion_refs.get(v.date, [])
        if refs:
            obs["derivedFrom"] = [{"reference": r} for r in refs]
        notes = list(v.notes)
        if notes:
            obs["note"] = _notes(notes)
        visit_obs.append(obs)
    last = result.visits[-1].date if result.visits else result.baseline_date
    bor = base(new_id("best-overall-response"),
               codeable(RESPONSE_SYSTEM, "best-overall-response", "Best overall response"), last)
    bor["method"] = method
    bor["valueCodeableConcept"] = _category(evaluation.best)
    bor["component"] = [
        _component("confirmation-days", valueQuantity=quantity(int(settings["confirmation_days"]), "d")),
        _component("min-sd-days", valueQuantity=quantity(int(settings["min_sd_days"]), "d")),
    ]
    if result.baseline_measure is not None:
        unit = MEASURE_UNIT.get(result.measure_unit, (result.measure_unit, result.measure_unit))
        bor["component"].append(_component("baseline-measure",
                                           valueQuantity=quantity(_number(result.baseline_measure), *unit)))
    if visit_obs:
        bor["hasMember"] = [reference("Observation", o["id"]) for o in visit_obs]
    bor_notes = [*result.notes, *evaluation.best_notes]
    if bor_notes:
        bor["note"] = _notes(bor_notes)
    marker_obs = [_marker_observation(m, base, new_id, settings) for m in markers]
    grade_obs = [_grade_observation(g, base, new_id) for g in grades]
    report, crf_obs = _case_report(parsed, criterion, evaluation, crf, base, new_id, last, subject)
    outputs: list[dict[str, Any]] = [*visit_obs, bor, *marker_obs, *grade_obs, *crf_obs, report]
    if parsed.lesion_doses:
        outputs.extend(_dose_response(parsed, criterion, base, new_id, last, subject))
    targets = [reference(r["resourceType"], r["id"]) for r in outputs]
    prov = provenance(
        targets=targets, service="response", version=version,
        inputs=[{"reference": r} for r in dict.fromkeys(parsed.input_refs)],
        activity="$tumor-response",
        policy=[f"{CANONICAL_BASE}/policy/tumor-response/{criterion}?{canonical_json(dict(settings))}"],
    )
    bundle = {
        "resourceType": "Bundle",
        "id": new_id("bundle"),
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in outputs],
    }
    return bundle, [*outputs, prov]


def _marker_observation(m: MarkerResponse, base: Any, new_id: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    obs: dict[str, Any] = base(new_id(f"marker:{m.marker}:{m.when.isoformat()}"),
                               codeable(RESPONSE_SYSTEM, "biochemical-response", "Biochemical (tumour-marker) response"),
                               m.when)
    obs["category"] = [codeable("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory")]
    obs["valueCodeableConcept"] = codeable(RESPONSE_SYSTEM, m.category)
    comps = [
        _component("tumor-marker", valueString=m.marker),
        _component("lab-value", valueQuantity={"value": float(m.value), "unit": m.unit}),
        _component("threshold-percent", valueQuantity=quantity(_number(Decimal(str(settings["biochemical_threshold_percent"]))), "%")),
    ]
    if m.percent_vs_baseline is not None:
        comps.append(_component("percent-change-baseline", valueQuantity=quantity(_percent(m.percent_vs_baseline), "%")))
    if m.percent_vs_nadir is not None:
        comps.append(_component("percent-change-nadir", valueQuantity=quantity(_percent(m.percent_vs_nadir), "%")))
    obs["component"] = comps
    obs["note"] = [{"text": f"{m.marker} {_number(m.value)} {m.unit} vs baseline {_number(m.baseline_value)} "
                            f"({m.baseline_date.isoformat()}); reported beside, never inside, the imaging category"}]
    return obs


def _grade_observation(g: CtcaeGrade, base: Any, new_id: Any) -> dict[str, Any]:
    obs: dict[str, Any] = base(new_id(f"ctcae:{g.analyte}"),
                               codeable(RESPONSE_SYSTEM, "ctcae-grade", "CTCAE v5.0 grade of a laboratory adverse event"),
                               g.when)
    obs["category"] = [codeable("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory")]
    obs["valueInteger"] = g.grade
    obs["component"] = [
        _component("ctcae-term", valueCodeableConcept=codeable(MEDDRA, g.meddra_code, g.term, text=g.term)),
        _component("lab-value", valueQuantity=quantity(_number(g.value), g.unit)),
        _component("reference-limit", valueQuantity=quantity(_number(g.reference), g.unit)),
    ]
    obs["note"] = [{"text": f"worst grade after treatment; graded against {g.reference_kind} "
                            "(CTCAE v5.0)"}]
    return obs


def _target_rows(parsed: ParsedInput, base: Any, new_id: Any) -> list[dict[str, Any]]:
    """One Observation per baseline target lesion (up to 5): location, size, density, uptake now."""
    baseline = parsed.assessments[0]
    latest = parsed.assessments[-1]
    rows: list[dict[str, Any]] = []
    for target in [m for m in baseline.lesions if m.role is Role.TARGET and m.fragment_of is None][:5]:
        now = latest.by_id().get(target.lesion_id, target)
        obs = base(new_id(f"crf-lesion:{target.lesion_id}"),
                   codeable(RESPONSE_SYSTEM, "crf-target-lesion", "Target lesion row of the imaging case-report form"),
                   latest.date)
        obs["focus"] = [{"reference": f"BodyStructure/{target.lesion_id}"}]
        comps = [_component("lesion-location", valueString=parsed.body_sites.get(target.lesion_id)
                            or target.location or target.lesion_id)]
        size = now.short_axis_mm if now.is_node else now.longest_diameter_mm
        if size is not None:
            comps.append(_component("lesion-size", valueQuantity=quantity(_number(size), "mm")))
        if now.attenuation_hu is not None:
            comps.append(_component("lesion-attenuation", valueQuantity=quantity(_number(now.attenuation_hu), "HU", "[hnsf'U]")))
        uptake = now.suv_max if now.suv_max is not None else now.sul_peak
        if uptake is not None:
            comps.append(_component("lesion-suv-max", valueQuantity=quantity(_number(uptake), "g/mL")))
            if now.suv_max is None:
                obs["note"] = [{"text": "SUVmax not given: SULpeak shown"}]
        obs["component"] = comps
        rows.append(obs)
    return rows


def _criterion_rows(crf: CaseReportForm, base: Any, new_id: Any, last: date,
                    ) -> tuple[list[dict[str, Any]], list[str]]:
    """One Observation per criterion of the form (vs baseline, vs nadir, best response), and the
    summary lines of the conclusion."""
    criterion_rows: list[dict[str, Any]] = []
    summary: list[str] = []
    for name, outcome in crf.evaluations.items():
        obs = base(new_id(f"crf-criterion:{name}"),
                   codeable(RESPONSE_SYSTEM, "crf-criterion", "Response of one criterion on the imaging case-report form"),
                   last)
        obs["method"] = codeable(RESPONSE_SYSTEM, name, CRITERION_DISPLAY[name])
        if isinstance(outcome, str):
            obs["dataAbsentReason"] = codeable("http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                               "not-applicable", "Not Applicable")
            obs["note"] = [{"text": outcome}]
            summary.append(f"{CRITERION_DISPLAY[name]}: not assessable ({outcome})")
        elif outcome.result.visits:
            v = outcome.result.visits[-1]
            obs["valueCodeableConcept"] = _category(v.overall)
            obs["component"] = [
                _component("vs-baseline", valueCodeableConcept=_category(v.vs_baseline)),
                _component("vs-nadir", valueCodeableConcept=_category(v.vs_nadir)),
                _component("nadir-date", valueDateTime=outcome.result.nadir_date.isoformat()),
                _component("best-overall-response", valueCodeableConcept=_category(outcome.best)),
            ]
            summary.append(f"{CRITERION_DISPLAY[name]}: vs baseline {v.vs_baseline}, vs nadir {v.vs_nadir}")
        else:
            obs["dataAbsentReason"] = codeable("http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                               "not-applicable", "Not Applicable")
            obs["note"] = [{"text": "no follow-up assessment"}]
        criterion_rows.append(obs)
    return criterion_rows, summary


def _case_report(parsed: ParsedInput, criterion: str, evaluation: Evaluation, crf: CaseReportForm,
                 base: Any, new_id: Any, last: date, subject: dict[str, Any] | None,
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Rozenblum et al. Table 1 case-report form as a DiagnosticReport with one Observation per target lesion and per criterion."""
    result = evaluation.result
    rows = _target_rows(parsed, base, new_id)
    criterion_rows, summary = _criterion_rows(crf, base, new_id, last)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": new_id("case-report-form"),
        "status": "final",
        "category": [codeable("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD", "Radiology")],
        "code": codeable(RESPONSE_SYSTEM, "case-report-form", "Imaging case-report form (003_… Table 1)"),
        "effectivePeriod": {"start": result.baseline_date.isoformat(), "end": last.isoformat()},
        "issued": f"{last.isoformat()}T00:00:00Z",
    }
    if subject:
        report["subject"] = subject
    extensions: list[dict[str, Any]] = []
    for modality in sorted(parsed.methods, key=lambda m: m.value):
        code, display = MODALITY_CODE[modality]
        extensions.append({"url": IMAGING_PROCEDURE_URL, "valueCodeableConcept": codeable(SNOMED, code, display)})
    previous = [t for t in parsed.treatments if t.performed <= last]
    for t in previous:
        extensions.append({"url": PREVIOUS_TREATMENT_URL,
                           "valueCodeableConcept": codeable(THERAPY_SYSTEM, t.therapy,
                                                            text=CRF_TREATMENT.get(t.therapy, t.therapy))})
    if extensions:
        report["extension"] = extensions
    report["result"] = [reference("Observation", o["id"]) for o in rows + criterion_rows]
    lines = [
        "Imaging procedure: " + (", ".join(m.value for m in sorted(parsed.methods, key=lambda m: m.value)) or "not stated"),
        f"Date of baseline: {result.baseline_date.isoformat()}",
        f"Date of nadir ({CRITERION_DISPLAY[criterion]}): {result.nadir_date.isoformat()}",
        "Previous treatment: " + (", ".join(sorted({CRF_TREATMENT.get(t.therapy, t.therapy) for t in previous})) or "none recorded"),
        *summary,
    ]
    report["conclusion"] = "; ".join(lines)
    report["conclusionCode"] = [_category(result.visits[-1].overall)] if result.visits else []
    if not report["conclusionCode"]:
        del report["conclusionCode"]
    return report, [*rows, *criterion_rows]


def _lesion_dose_observation(row: LesionDoseResponse, obs: dict[str, Any]) -> dict[str, Any]:
    def c(code: str, **value: Any) -> dict[str, Any]:
        return {"code": codeable(OBSERVATION_CODE_SYSTEM, code), **value}

    comps: list[dict[str, Any]] = []
    if row.dose is not None:
        comps.append(c("dose-mean", valueQuantity=quantity(round(row.dose.dose_gy, 2), "Gy")))
        if row.dose.bed_gy is not None:
            comps.append(c("bed-mean", valueQuantity=quantity(round(row.dose.bed_gy, 2), "Gy")))
        obs["derivedFrom"] = [{"reference": row.dose.source}]
    for code, value in (("lesion-baseline-size", row.baseline_mm), ("lesion-latest-size", row.latest_mm)):
        if value is not None:
            comps.append(c(code, valueQuantity=quantity(_number(value), "mm")))
    if row.change_percent is not None:
        comps.append(c("lesion-size-change", valueQuantity=quantity(_percent(row.change_percent), "%")))
    if row.category is not None:
        comps.append(c("lesion-response", valueCodeableConcept=_category(row.category)))
    obs["focus"] = [{"reference": f"BodyStructure/{row.lesion_id}"}]
    obs["component"] = comps
    if row.dose is not None:
        obs["valueQuantity"] = quantity(round(row.dose.dose_gy, 2), "Gy")
    return obs


def _row_text(row: LesionDoseResponse, name: str) -> str:
    dose = (f"{row.dose.dose_gy:.1f} Gy" + (f", BED {row.dose.bed_gy:.1f} Gy" if row.dose.bed_gy is not None else "")
            if row.dose is not None else "dose not known")
    size = (f"{_number(row.baseline_mm)} → {_number(row.latest_mm)} mm" if row.baseline_mm is not None
            and row.latest_mm is not None else "size not known")
    change = f" ({_percent(row.change_percent)} %)" if row.change_percent is not None else ""
    return f"{name}: {dose}; {size}{change}; {row.category or 'no per-lesion category'}"


def _dose_response(parsed: ParsedInput, criterion: str, base: Any, new_id: Any, last: date,
                   subject: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One lesion-dose-response Observation per baseline lesion and the dose-response report."""
    rows = dose_response_table(criterion, parsed.assessments, parsed.lesion_doses)
    observations = []
    for row in rows:
        obs = base(new_id(f"dose-response/{row.lesion_id}"),
                   codeable(OBSERVATION_CODE_SYSTEM, "lesion-dose-response",
                            "Absorbed dose and response of one lesion"), last)
        obs["method"] = codeable(RESPONSE_SYSTEM, criterion, CRITERION_DISPLAY[criterion])
        observations.append(_lesion_dose_observation(row, obs))
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": new_id("dose-response-report"), "status": "final",
        "code": codeable(OBSERVATION_CODE_SYSTEM, "dose-response-report", "Dose-response per lesion"),
        **({"subject": subject} if subject else {}), "effectiveDateTime": last.isoformat(),
        "result": [reference("Observation", o["id"]) for o in observations],
        "conclusion": "\n".join([f"Dose-response per lesion ({CRITERION_DISPLAY[criterion]}):",
                                 *(_row_text(r, parsed.body_sites.get(r.lesion_id) or r.lesion_id) for r in rows)]),
    }
    return [*observations, report]
