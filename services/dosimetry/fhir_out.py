"""Dosimetry results → FHIR: the ``$sirt-activity`` plan and the voxel-dosimetry results.

Outputs are plain R4 JSON built with :mod:`netliver.fhir.builders`: the plan's output
Parameters, its Observation (components coded in the observation-code CodeSystem) and
Provenance; for a voxel job, one Observation per VOI (Dmean, D50, D70, D90, V100, V120 in Gy or
%), the DiagnosticReport and their Provenance, with ids determined by the job's parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netliver.fhir.builders import (
    OperationResult,
    codeable,
    deterministic_id,
    fhir_instant,
    imaging_study_id,
    provenance,
    quantity,
    reference,
)
from netliver.fhir.codesystems import CODESYSTEMS, LOINC, OBSERVATION_CODE_SYSTEM
from netliver.fhir.extensions import extension_url
from netliver.fhir.sampled_dvh import dvh_attachment
from services.dosimetry.domain.comparison import (
    TUMOUR_DMEAN_FLAG_PERCENT,
    DoseComparison,
    VoiComparison,
)
from services.dosimetry.domain.constants import (
    DOSE_CONSTANTS,
    Y90_HALF_LIFE_EANM_2022_H,
    Y90_HALF_LIFE_H,
)
from services.dosimetry.domain.cumulative import PriorDoses
from services.dosimetry.domain.planning import SirtPlan
from services.dosimetry.fhir_in import (
    OPERATION,
    SERVICE,
    ComparisonRequest,
    SirtRequest,
    VoxelJobRequest,
)

if TYPE_CHECKING:
    from services.dosimetry.imaging.pipeline import VoiDose, VoxelDosimetryResult

__all__ = ["BED_CODES", "BED_MAP_EXTENSION", "METRIC_CODES", "PLAN_COMPONENT_CODES", "VoxelResults", "comparison_result", "sirt_result", "voxel_results"]

_PLAN_COMPONENTS = ("activityGBq", "activityAtCalibrationGBq", "tumorDoseGy", "normalLiverDoseGy",
                    "perfusedLiverDoseGy", "lungDoseGy", "cumulativeLungDoseGy", "doseConstant", "lsfReduction",
                    "limitingFactor", "status")
#: Component codes of the plan Observation (published in OBSERVATION_CODE_SYSTEM), named like the
#: outputs, with their displays.
PLAN_COMPONENT_CODES: dict[str, str] = {
    c.code: c.display for c in CODESYSTEMS["observation-code"].concepts if c.code in _PLAN_COMPONENTS}
#: Display of every project observation code (the CodeSystem is the one source of displays).
CODE_DISPLAYS: dict[str, str] = {c.code: c.display for c in CODESYSTEMS["observation-code"].concepts}
if len(PLAN_COMPONENT_CODES) != len(_PLAN_COMPONENTS):  # pragma: no cover - guards the shared CodeSystem
    raise RuntimeError("the observation-code CodeSystem lacks SIRT plan component codes")


def _r(value: float, digits: int) -> float:
    return round(value, digits)


def _dose_constant_policy(value: float) -> str:
    for constant in DOSE_CONSTANTS.values():
        if math.isclose(constant.value_gy_kg_per_gbq, value, rel_tol=0, abs_tol=1e-9):
            return constant.policy_uri
    return f"https://netliver.org/fhir/policy/dose-constant/custom?value={value:g}"


def _outputs(plan: SirtPlan) -> list[tuple[str, str, Any, str | None]]:
    """(name, kind, value, UCUM unit) of every result, in the contract's order then extras."""
    rows: list[tuple[str, str, Any, str | None]] = [("activityGBq", "Decimal", _r(plan.activity_gbq, 4), "GBq")]
    if plan.activity_at_calibration_gbq is not None:
        rows.append(("activityAtCalibrationGBq", "Decimal", _r(plan.activity_at_calibration_gbq, 4), "GBq"))
    if plan.tumor_dose_gy is not None:
        rows.append(("tumorDoseGy", "Decimal", _r(plan.tumor_dose_gy, 2), "Gy"))
    if plan.normal_liver_dose_gy is not None:
        rows.append(("normalLiverDoseGy", "Decimal", _r(plan.normal_liver_dose_gy, 2), "Gy"))
    rows.append(("lungDoseGy", "Decimal", _r(plan.lung_dose_gy, 2), "Gy"))
    rows.append(("doseConstant", "Decimal", plan.dose_constant, "Gy.kg/GBq"))
    rows.append(("limitingFactor", "Code", plan.limiting_factor, None))
    rows.append(("lsfReduction", "Decimal", _r(plan.lsf_reduction, 4), "1"))
    rows.append(("status", "Code", plan.status, None))
    rows.extend(("warning", "String", str(w), None) for w in plan.warnings if w.severity != "version")
    if plan.perfused_liver_dose_gy is not None:
        rows.append(("perfusedLiverDoseGy", "Decimal", _r(plan.perfused_liver_dose_gy, 2), "Gy"))
    rows.append(("cumulativeLungDoseGy", "Decimal", _r(plan.cumulative_lung_dose_gy, 2), "Gy"))
    rows.extend(("lesionDoseGy", "Decimal", _r(d, 2), "Gy") for d in plan.lesion_doses_gy[1:])
    if plan.bsa_m2 is not None:
        rows.append(("bsaM2", "Decimal", _r(plan.bsa_m2, 4), "m2"))
    if plan.tumor_involvement is not None:
        rows.append(("tumorInvolvement", "Decimal", _r(plan.tumor_involvement, 4), "1"))
    rows.extend(("note", "String", str(w), None) for w in plan.warnings if w.severity == "version")
    rows.append(("protocol", "Code", plan.protocol.key, None))
    rows.append(("halfLifeH", "Decimal", plan.half_life_h, "h"))
    return rows


def _component(name: str, kind: str, value: Any, unit: str | None) -> dict[str, Any]:
    comp: dict[str, Any] = {"code": codeable(OBSERVATION_CODE_SYSTEM, name, PLAN_COMPONENT_CODES[name])}
    if kind == "Decimal":
        comp["valueQuantity"] = quantity(value, unit or "1")
    else:
        comp["valueString"] = str(value)
    return comp


#: Component codes of the targets and limits a plan was checked against.
LIMIT_CODES = ("tumorTargetGy", "perfusedTargetGy", "normalLiverLimitGy", "lungLimitGy", "cumulativeLungLimitGy")


def _limit(code: str, value: float, where: str) -> dict[str, Any]:
    return {"code": codeable(OBSERVATION_CODE_SYSTEM, code, CODE_DISPLAYS[code], text=where),
            "valueQuantity": quantity(_r(value, 2), "Gy")}


def _limits(plan: SirtPlan, request: SirtRequest) -> list[dict[str, Any]]:
    """The targets and limits the plan was checked against, each saying where it came from: the
    request's parameter, else the protocol's value (only where the plan predicts that dose),
    else the EANM 2022 default (lung)."""
    p, protocol = request.inputs, plan.protocol
    given = set(request.locations)
    from_protocol = f"protocol {protocol.key} ({protocol.title})"
    out: list[dict[str, Any]] = []
    if p.method == "partition" and p.target_dose_gy is not None:
        out.append(_limit("tumorTargetGy", p.target_dose_gy, "targetDoseGy of the request"))
    elif plan.tumor_dose_gy is not None and protocol.tumor_min_gy is not None:
        out.append(_limit("tumorTargetGy", protocol.tumor_min_gy, from_protocol))
    if p.method == "mird" and p.target_dose_gy is not None:
        out.append(_limit("perfusedTargetGy", p.target_dose_gy, "targetDoseGy of the request"))
    elif plan.perfused_liver_dose_gy is not None and protocol.perfused_min_gy is not None:
        out.append(_limit("perfusedTargetGy", protocol.perfused_min_gy, from_protocol))
    compromised = p.compromised_liver and protocol.normal_liver_max_compromised_gy is not None
    protocol_liver = protocol.normal_liver_max_compromised_gy if compromised else protocol.normal_liver_max_gy
    if p.normal_liver_limit_gy is not None:
        out.append(_limit("normalLiverLimitGy", p.normal_liver_limit_gy, "normalLiverLimitGy of the request"))
    elif plan.normal_liver_dose_gy is not None and protocol_liver is not None:
        out.append(_limit("normalLiverLimitGy", protocol_liver,
                          from_protocol + (", compromised liver" if compromised else "")))
    for code, value in (("lungLimitGy", p.lung_limit_gy), ("cumulativeLungLimitGy", p.cumulative_lung_limit_gy)):
        out.append(_limit(code, value, f"{code} of the request" if code in given else "default (EANM 2022)"))
    return out


def plan_observation_id(request: SirtRequest) -> str:
    """The plan Observation's id: determined by the caller's parameters (not the stored records)."""
    return deterministic_id(SERVICE, OPERATION, request.canonical)


def _prior_outputs(prior: PriorDoses) -> list[dict[str, Any]]:
    """``priorLungDoseGy``, one ``priorRecord`` per record used, one ``priorTreatment`` per
    earlier treatment (date, source, lung and normal-liver dose, its records), and a ``note`` per
    record left out."""
    out: list[dict[str, Any]] = [{"name": "priorLungDoseGy", "valueDecimal": _r(prior.lung_gy, 2)}]
    out.extend({"name": "priorRecord", "valueReference": {"reference": ref}} for ref in prior.records)
    for t in prior.treatments:
        parts: list[dict[str, Any]] = [{"name": "date", "valueDate": t.treatment_date.isoformat()},
                                       {"name": "source", "valueCode": t.source},
                                       {"name": "lungDoseGy", "valueDecimal": _r(t.lung_gy, 2)}]
        if t.normal_liver_gy is not None:
            parts.append({"name": "normalLiverDoseGy", "valueDecimal": _r(t.normal_liver_gy, 2)})
        parts.extend({"name": "record", "valueReference": {"reference": ref}} for ref in t.records)
        out.append({"name": "priorTreatment", "part": parts})
    out.extend({"name": "note", "valueString": f"{ref} not used as a prior dose: {why}"} for ref, why in prior.ignored)
    return out


def _prior_text(prior: PriorDoses) -> str:
    rows = [f"{t.treatment_date.isoformat()} {t.lung_gy:.2f} Gy lung"
            + (f", {t.normal_liver_gy:.1f} Gy normal liver" if t.normal_liver_gy is not None else "")
            + f" ({t.source}: {', '.join(t.records)})" for t in prior.treatments]
    return (f"Prior treatments: {'; '.join(rows)}; prior lung dose {prior.lung_gy:.2f} Gy" if rows
            else "No earlier SIRT treatment of this patient is recorded")


def sirt_result(plan: SirtPlan, request: SirtRequest, version: str, prior: PriorDoses | None = None) -> OperationResult:
    """The ``$sirt-activity`` answer: output Parameters, and the plan Observation with its
    Provenance to write (deterministic ids over the canonical input)."""
    obs_id = plan_observation_id(request)
    rows = _outputs(plan)
    output_params: list[dict[str, Any]] = [{"name": n, f"value{k}": v} for n, k, v, _ in rows]
    output_params.append({"name": "plan", "valueReference": reference("Observation", obs_id)})
    if prior is not None:
        output_params.extend(_prior_outputs(prior))
    components = [_component(n, k, v, u) for n, k, v, u in rows if n in PLAN_COMPONENT_CODES]
    components += _limits(plan, request)
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "category": [codeable("http://terminology.hl7.org/CodeSystem/observation-category", "procedure")],
        "code": codeable(OBSERVATION_CODE_SYSTEM, "sirt-activity-plan", "SIRT activity plan"),
        "method": {"text": f"{plan.method} ({plan.device} microspheres); protocol {plan.protocol.key}"},
        "valueQuantity": quantity(_r(plan.activity_gbq, 4), "GBq"),
        "component": components,
    }
    if request.patient:
        observation["subject"] = dict(request.patient)
    if request.treatment_time_text:
        observation["effectiveDateTime"] = request.treatment_time_text
    if plan.warnings or prior is not None:
        observation["note"] = [{"text": str(w)} for w in plan.warnings] + (
            [{"text": _prior_text(prior)}] if prior is not None else [])
    half_life_policy = ("https://netliver.org/fhir/policy/y90-half-life/"
                        f"{'eanm-2022' if plan.half_life_h == Y90_HALF_LIFE_EANM_2022_H else 'nuclear-data' if plan.half_life_h == Y90_HALF_LIFE_H else 'custom'}"
                        f"?value={plan.half_life_h:g}")
    prov = provenance(
        targets=[reference("Observation", obs_id)], service=SERVICE, version=version,
        inputs=([request.patient] if request.patient else [])
        + ([{"reference": r} for r in prior.records] if prior is not None else []), activity=OPERATION,
        policy=[_dose_constant_policy(plan.dose_constant), plan.protocol.policy_uri, half_life_policy])
    output = {"resourceType": "Parameters", "parameter": output_params}
    return OperationResult(output=output, write=[observation, prov])


# ------------------------------------------------------------------------------ voxel dosimetry

#: Output metric → (code in OBSERVATION_CODE_SYSTEM, display, UCUM unit); the codes are
#: published in :mod:`netliver.fhir.codesystems`.
METRIC_CODES: dict[str, tuple[str, str, str]] = {
    "Dmean": ("dose-mean", "Mean absorbed dose", "Gy"),
    "D50": ("dose-d50", "Minimum dose to the hottest 50 % of the VOI", "Gy"),
    "D70": ("dose-d70", "Minimum dose to the hottest 70 % of the VOI", "Gy"),
    "D90": ("dose-d90", "Minimum dose to the hottest 90 % of the VOI", "Gy"),
    "V100": ("dose-v100", "Share of the VOI volume receiving at least 100 Gy", "%"),
    "V120": ("dose-v120", "Share of the VOI volume receiving at least 120 Gy", "%"),
    "Dmin": ("dose-min", "Minimum absorbed dose", "Gy"),
    "Dmax": ("dose-max", "Maximum absorbed dose", "Gy"),
}
#: Radiobiology metric → (code in OBSERVATION_CODE_SYSTEM, display, UCUM unit): components of the
#: tumour and liver VOIs' Observations, computed over the voxel BED map.
BED_CODES: dict[str, tuple[str, str, str]] = {
    "BEDmean": ("bed-mean", "Mean biologically effective dose", "Gy"),
    "EQD2mean": ("eqd2-mean", "Mean equivalent dose in 2 Gy fractions", "Gy"),
    "BED70": ("bed-d70", "Minimum BED to the hottest 70 % of the VOI", "Gy"),
}
#: DiagnosticReport extension naming the voxel BED map stored in the PACS (its SOP Instance UID).
BED_MAP_EXTENSION = extension_url("voxel-bed-map")
_METHOD_TEXT = {"ldm": "local deposition (EANM)", "dvk": "Y-90 voxel S-value kernel convolution (Lanconelli 2012)"}


@dataclass(frozen=True)
class VoxelResults:
    """What a finished voxel job hands to the gateway: resources to write and the Task outputs."""

    resources: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


def _bed_components(voi: VoiDose) -> list[dict[str, Any]]:
    """BEDmean, EQD2mean, BED70 and the α/β and repair half-time they were computed with."""
    if voi.tissue is None or not voi.radiobiology:
        return []
    out = [{"code": codeable(OBSERVATION_CODE_SYSTEM, code, display, text=name),
            "valueQuantity": quantity(round(float(voi.radiobiology[name]), 4), unit)}
           for name, (code, display, unit) in BED_CODES.items() if name in voi.radiobiology]
    out.append({"code": codeable(OBSERVATION_CODE_SYSTEM, "alpha-beta", "α/β ratio used for the BED",
                                 text=f"α/β ({voi.tissue.name})"),
                "valueQuantity": quantity(voi.tissue.alpha_beta_gy, "Gy")})
    out.append({"code": codeable(OBSERVATION_CODE_SYSTEM, "repair-half-time", "Repair half-time used for the BED",
                                 text=f"repair half-time ({voi.tissue.name})"),
                "valueQuantity": quantity(voi.tissue.repair_half_time_h, "h")})
    return out


def _voi_observation(voi: VoiDose, result: VoxelDosimetryResult, request: VoxelJobRequest,
                     when: str) -> dict[str, Any]:
    components: list[dict[str, Any]] = []
    for name, value in voi.metrics.items():
        if name not in METRIC_CODES or value is None:
            continue
        code, display, unit = METRIC_CODES[name]
        components.append({"code": codeable(OBSERVATION_CODE_SYSTEM, code, display, text=name),
                           "valueQuantity": quantity(round(float(value), 4), unit)})
    components.extend(_bed_components(voi))
    components.append({"code": {"text": "VOI volume"}, "valueQuantity": quantity(round(voi.volume_ml, 2), "mL")})
    components.append({"code": {"text": "VOI mass"}, "valueQuantity": quantity(round(voi.mass_g, 2), "g")})
    components.append({"code": {"text": "share of the counts"},
                       "valueQuantity": quantity(round(100 * voi.activity_fraction, 3), "%")})
    return {
        "resourceType": "Observation", "id": deterministic_id("dosimetry", "voxel-dose", request.key, voi.name),
        "status": "final",
        "category": [codeable("http://terminology.hl7.org/CodeSystem/observation-category", "imaging"),
                     *([codeable(OBSERVATION_CODE_SYSTEM, "dose-simulation", CODE_DISPLAYS["dose-simulation"])]
                       if result.simulation else [])],
        "code": codeable(OBSERVATION_CODE_SYSTEM, "voxel-dose-metrics", "Voxel dose metrics",
                         text=f"Absorbed dose in {voi.name}"),
        **({"subject": {"reference": request.patient}} if request.patient else {}),
        "bodySite": {"text": f"{voi.name} ({voi.role}, {voi.source} VOI)"},
        "method": {"text": _METHOD_TEXT["ldm" if result.method == "ldm" else "dvk"]},
        "effectiveDateTime": _administration(result) or when,
        "issued": when,
        "valueQuantity": quantity(round(float(voi.metrics["Dmean"]), 4), "Gy"),
        "component": components,
        **({"note": [{"text": "Automatic liver VOI (no segmentation was given)"}]}
           if voi.source == "automatic" else {}),
    }


def _administration(result: VoxelDosimetryResult) -> str | None:
    """The administration time the activity map is decay-corrected to: the clinically relevant
    time of the dose (the treatment, for Y-90); a date alone when the DICOM time has no zone."""
    t = result.reference_time
    if t is None:
        return None
    return t.isoformat() if t.tzinfo else t.date().isoformat()


def _conclusion(result: VoxelDosimetryResult, request: VoxelJobRequest) -> str:
    lines = [f"Voxel dosimetry ({'local deposition' if result.method == 'ldm' else 'kernel convolution'}) "
             f"of study {request.study_uid}: {result.administered_activity_gbq:.3g} GBq Y-90"
             f"{' (planned; MAA simulation)' if result.simulation else ''}, dose constant "
             f"{result.dose_constant_gy_kg_per_gbq} Gy·kg/GBq."]
    for voi in result.vois:
        m = voi.metrics
        bed = voi.radiobiology
        lines.append(f"{voi.name}: Dmean {m['Dmean']:.1f} Gy, D70 {m['D70']:.1f} Gy, D90 {m['D90']:.1f} Gy, "
                     f"V100 {m['V100']:.1f} %"
                     + (f"; BEDmean {bed['BEDmean']:.1f} Gy, EQD2mean {bed['EQD2mean']:.1f} Gy "
                        f"(α/β {voi.tissue.alpha_beta_gy:g} Gy)" if bed and voi.tissue else ""))
    if result.lung_shunt_fraction is not None:
        lines.append(f"Lung shunt fraction from the image: {100 * result.lung_shunt_fraction:.1f} %")
    if result.bed_map_series_uid:
        lines.append(f"BED map stored in the PACS study: RT Dose series {result.bed_map_series_uid} "
                     "(DoseType EFFECTIVE; tumour and liver VOIs, 0 Gy elsewhere)")
    lines.extend(f"Warning: {w}" for w in result.warnings)
    return "\n".join(lines)


def voxel_results(result: VoxelDosimetryResult, request: VoxelJobRequest, job_id: str,
                  version: str, lesions: dict[str, str] | None = None) -> VoxelResults:
    """The job's FHIR results: one Observation per VOI, the DiagnosticReport and their Provenance.
    ``lesions`` maps a VOI name to its lesion's ``BodyStructure/<id>`` (the Observation's ``focus``)."""
    when = fhir_instant()
    observations = [_voi_observation(voi, result, request, when) for voi in result.vois]
    for obs, voi in zip(observations, result.vois, strict=True):
        if lesions and voi.name in lesions:
            obs["focus"] = [{"reference": lesions[voi.name]}]
    report_id = deterministic_id("dosimetry", "voxel-report", request.key)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": report_id, "status": "final",
        "category": [codeable("http://terminology.hl7.org/CodeSystem/v2-0074", "NMS", "Nuclear Medicine")],
        "code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "voxel-dosimetry-report",
                             "display": "Voxel dosimetry report"},
                            {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}]},
        **({"subject": {"reference": request.patient}} if request.patient else {}),
        "effectiveDateTime": _administration(result) or when,
        "issued": when,
        "result": [{"reference": f"Observation/{o['id']}"} for o in observations],
        "conclusion": _conclusion(result, request),
    }
    if request.imaging_study:
        report["imagingStudy"] = [{"reference": request.imaging_study}]
    curves = [(voi.name, voi.role, voi.dvh) for voi in result.vois if voi.dvh]
    if curves:  # the whole curve, for the page and any EHR (FHIR has no dose-axis data type)
        report["presentedForm"] = [dvh_attachment(curves)]
    inputs = [{"reference": request.imaging_study}] if request.imaging_study else [
        {"reference": f"ImagingStudy/{imaging_study_id(request.study_uid)}",
         "display": f"DICOM study {request.study_uid}"}]
    rtdose, bed_map = result.rtdose_sop_instance_uid, result.bed_map_sop_instance_uid
    extra = ([{"role": "derivation", "what": {"display": f"RT Dose {rtdose} stored in the PACS study",
                                               "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{rtdose}"}}}]
             if rtdose else [])
    if bed_map:
        # the BED map in the PACS: named by the report (an extension any reader can follow to the
        # instance) and by the Provenance
        identifier = {"system": "urn:dicom:uid", "value": f"urn:oid:{bed_map}"}
        report["extension"] = [{"url": BED_MAP_EXTENSION, "valueIdentifier": identifier}]
        extra.append({"role": "derivation", "what": {
            "display": f"BED map {bed_map} (RT Dose, DoseType EFFECTIVE) stored in the PACS study",
            "identifier": identifier}})
    targets = [{"reference": f"DiagnosticReport/{report_id}"},
               *({"reference": f"Observation/{o['id']}"} for o in observations)]
    prov = provenance(targets=targets, service="dosimetry", version=version, inputs=inputs,
                      activity="$voxel-dosimetry", extra_entities=extra,
                      policy=[f"{OBSERVATION_CODE_SYSTEM}#dose-constant={result.dose_constant_gy_kg_per_gbq}",
                              f"job:{job_id}"])
    outputs = [{"type": "DiagnosticReport", "reference": f"DiagnosticReport/{report_id}"},
               *({"type": "Observation", "reference": f"Observation/{o['id']}"} for o in observations)]
    return VoxelResults([report, *observations, prov], outputs)


# ------------------------------------------------------------------------------ dose comparison

#: (metric, component code stem, unit of the difference) of a dose-comparison Observation.
_COMPARED = (("Dmean", "dose-mean", "Gy"), ("D70", "dose-d70", "Gy"), ("V100", "dose-v100", "%"))


def _q(code: str, value: float, unit: str, text: str | None = None) -> dict[str, Any]:
    return {"code": codeable(OBSERVATION_CODE_SYSTEM, code, CODE_DISPLAYS[code], text=text),
            "valueQuantity": quantity(round(value, 4), unit)}


def _comparison_components(row: VoiComparison) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for metric, stem, unit in _COMPARED:
        diff = {"Dmean": row.dmean, "D70": row.d70, "V100": row.v100}[metric]
        if diff is None:
            continue
        out.append(_q(f"predicted-{stem}", diff.predicted, unit, f"predicted {metric}"))
        out.append(_q(f"delivered-{stem}", diff.delivered, unit, f"delivered {metric}"))
        out.append(_q(f"{stem}-difference", diff.absolute, unit, f"{metric} delivered − predicted"))
        if diff.percent is not None:
            out.append(_q(f"{stem}-difference-percent", diff.percent, "%", f"{metric} difference, % of predicted"))
    if row.role == "tumour":
        out.append({"code": codeable(OBSERVATION_CODE_SYSTEM, "dose-discrepancy", CODE_DISPLAYS["dose-discrepancy"]),
                    "valueBoolean": row.flagged})
    return out


def _comparison_text(row: VoiComparison) -> str:
    d = row.dmean
    pct = f" ({d.percent:+.1f} %)" if d.percent is not None else ""
    flag = f": differs by more than {TUMOUR_DMEAN_FLAG_PERCENT:g} % of the predicted tumour dose" if row.flagged else ""
    return f"{row.name}: Dmean predicted {d.predicted:.1f} Gy, delivered {d.delivered:.1f} Gy{pct}{flag}"


def comparison_result(comparison: DoseComparison, request: ComparisonRequest, version: str) -> OperationResult:
    """``$dose-comparison``: a DiagnosticReport with one Observation per VOI (and one for the lung
    shunt when both results give it), ``derivedFrom`` both results, and their Provenance."""
    when = fhir_instant()
    subject = {"subject": {"reference": request.patient}} if request.patient else {}
    both = [{"reference": request.predicted.reference}, {"reference": request.delivered.reference}]
    observations: list[dict[str, Any]] = []
    for row in comparison.vois:
        observations.append({
            "resourceType": "Observation",
            "id": deterministic_id(SERVICE, "dose-comparison", request.canonical, row.name),
            "status": "final",
            "category": [codeable("http://terminology.hl7.org/CodeSystem/observation-category", "imaging")],
            "code": codeable(OBSERVATION_CODE_SYSTEM, "dose-comparison", CODE_DISPLAYS["dose-comparison"],
                             text=f"Predicted versus delivered dose in {row.name}"),
            **subject, "effectiveDateTime": when,
            "bodySite": {"text": f"{row.name} ({row.role})"},
            "valueQuantity": quantity(round(row.dmean.absolute, 4), "Gy"),
            "component": _comparison_components(row),
            "derivedFrom": [*both, *({"reference": v.source} for v in (row.predicted, row.delivered) if v.source)],
            **({"interpretation": [codeable("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                            "A", "Abnormal")],
                "note": [{"text": _comparison_text(row)}]} if row.flagged else {}),
        })
    lsf_p, lsf_d = comparison.lung_shunt_predicted, comparison.lung_shunt_delivered
    if lsf_p is not None or lsf_d is not None:
        comps = [_q(code, 100 * value, "%") for code, value in
                 (("lung-shunt-predicted", lsf_p), ("lung-shunt-delivered", lsf_d)) if value is not None]
        observations.append({
            "resourceType": "Observation", "id": deterministic_id(SERVICE, "dose-comparison", request.canonical,
                                                                   "lung shunt"),
            "status": "final",
            "category": [codeable("http://terminology.hl7.org/CodeSystem/observation-category", "imaging")],
            "code": codeable(OBSERVATION_CODE_SYSTEM, "lung-shunt-comparison", CODE_DISPLAYS["lung-shunt-comparison"]),
            **subject, "effectiveDateTime": when, "component": comps, "derivedFrom": both})
    lines = [f"Predicted ({request.predicted.reference}) versus delivered ({request.delivered.reference}) dose:"]
    lines.extend(_comparison_text(row) for row in comparison.vois)
    lines.append("Lung shunt fraction: predicted "
                 + (f"{100 * lsf_p:.1f} %" if lsf_p is not None else "not known") + ", delivered "
                 + (f"{100 * lsf_d:.1f} %" if lsf_d is not None else "not known"))
    if comparison.unmatched:
        lines.append(f"VOIs in one result only (not compared): {', '.join(comparison.unmatched)}")
    report_id = deterministic_id(SERVICE, "dose-comparison-report", request.canonical)
    report = {
        "resourceType": "DiagnosticReport", "id": report_id, "status": "final",
        "category": [codeable("http://terminology.hl7.org/CodeSystem/v2-0074", "NMS", "Nuclear Medicine")],
        "code": codeable(OBSERVATION_CODE_SYSTEM, "dose-comparison-report", CODE_DISPLAYS["dose-comparison-report"]),
        **subject, "effectiveDateTime": when, "issued": when,
        "result": [{"reference": f"Observation/{o['id']}"} for o in observations],
        "conclusion": "\n".join(lines),
    }
    targets = [{"reference": f"DiagnosticReport/{report_id}"},
               *({"reference": f"Observation/{o['id']}"} for o in observations)]
    prov = provenance(targets=targets, service=SERVICE, version=version, inputs=both, activity="$dose-comparison",
                      policy=[f"{OBSERVATION_CODE_SYSTEM}#dose-discrepancy>{TUMOUR_DMEAN_FLAG_PERCENT:g}%"])
    output = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"DiagnosticReport/{report_id}", "resource": report},
                        *({"fullUrl": f"Observation/{o['id']}", "resource": o} for o in observations)]}
    return OperationResult(output=output, write=[report, *observations, prov])
