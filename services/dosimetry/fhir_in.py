"""FHIR → dosimetry inputs: ``$sirt-activity`` Parameters to :class:`PlanInputs`, job parameters
to :class:`VoxelJobRequest`; and the one place domain errors become ``FhirError``s.

Inputs are read from the caller's JSON (not a model round-trip) so decimals keep their digits.
Parameter names are the public contract's ("SIRT activity planning") plus these optional
extras: ``patient`` (valueReference to the Patient the plan is for), ``protocol`` (valueCode, a
key of :data:`services.dosimetry.domain.protocols.PROTOCOLS`), ``bsaFormula`` (valueCode
``dubois`` (default) | ``mosteller``), ``vialResidualFraction``, ``cumulativeLungLimitGy`` (default 50),
``halfLifeH`` (default 64.1; EANM 2022 uses 64.2), ``compromisedLiver`` and ``priorPrrt``
(valueBoolean), and repeated ``lesion`` parameters (parts ``volumeMl`` and ``tumorToNormalRatio``)
for further tumour compartments of the multi-lesion partition model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from netliver.fhir.builders import (
    canonical_json,
)
from netliver.fhir.outcome import FhirError
from services.dosimetry.domain.comparison import StudyDoses, VoiMetrics
from services.dosimetry.domain.cumulative import DoseRecord
from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.planning import PlanInputs

__all__ = ["ACCEPTED_PARAMETERS", "COMPARISON_INPUTS", "PARAMETER_OF_FIELD", "RECORD", "ComparisonRequest", "SirtRequest", "VoxelJobRequest", "comparison_error", "dose_records", "input_error", "parse_comparison_request", "parse_sirt_request", "voxel_job_request"]

SERVICE = "dosimetry"
OPERATION = "sirt-activity"
#: The parameter in which the gateway hands the patient's stored dose records to ``$sirt-activity``.
RECORD = "record"

# parameter name -> (PlanInputs field, FHIR value type)
_DECIMALS: dict[str, str] = {
    "heightCm": "height_cm", "weightKg": "weight_kg", "bsaM2": "bsa_m2", "tumorInvolvement": "tumor_involvement",
    "liverVolumeMl": "liver_volume_ml", "tumorVolumeMl": "tumor_volume_ml", "perfusedFraction": "perfused_fraction",
    "lungShuntFraction": "lung_shunt_fraction", "tumorToNormalRatio": "tumor_to_normal_ratio",
    "targetDoseGy": "target_dose_gy", "normalLiverLimitGy": "normal_liver_limit_gy",
    "lungLimitGy": "lung_limit_gy", "priorLungDoseGy": "prior_lung_dose_gy", "lungMassKg": "lung_mass_kg",
    "tissueDensityGPerMl": "tissue_density_g_per_ml", "doseConstant": "dose_constant",
    "vialResidualFraction": "vial_residual_fraction", "cumulativeLungLimitGy": "cumulative_lung_limit_gy",
    "halfLifeH": "half_life_h",
}
_CODES = {"method": "method", "device": "device", "protocol": "protocol", "bsaFormula": "bsa_formula"}
_DATETIMES = {"calibrationTime": "calibration_time", "treatmentTime": "treatment_time"}
_BOOLEANS = {"compromisedLiver": "compromised_liver", "priorPrrt": "prior_prrt"}
#: Every parameter name ``$sirt-activity`` reads, with the FHIR value types it accepts.
ACCEPTED_PARAMETERS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(_DECIMALS, ("Decimal", "Integer")), **dict.fromkeys(_CODES, ("Code", "String")),
    **dict.fromkeys(_DATETIMES, ("DateTime", "Instant")), **dict.fromkeys(_BOOLEANS, ("Boolean",)),
    "patient": ("Reference",), "lesion": (),
}

@dataclass(frozen=True)
class SirtRequest:
    """A parsed ``$sirt-activity`` request."""

    inputs: PlanInputs
    patient: dict[str, Any] | None
    canonical: list[Any]
    locations: dict[str, str] = field(default_factory=dict)  # parameter name -> FHIRPath
    treatment_time_text: str | None = None
    #: The patient's stored plans and voxel results, added by the gateway (``record`` parameters).
    records: tuple[Mapping[str, Any], ...] = ()


#: Domain field → the contract's parameter name (the inverse of the readers above).
PARAMETER_OF_FIELD: dict[str, str] = {
    **{field_name: name for table in (_DECIMALS, _CODES, _DATETIMES, _BOOLEANS) for name, field_name in table.items()},
    "extra_lesions.volume_ml": "lesion.volumeMl", "extra_lesions.tumor_to_normal_ratio": "lesion.tumorToNormalRatio",
}


def input_error(err: DosimetryInputError, request: SirtRequest | None) -> FhirError:
    """422 naming the parameter: its indexed path when given, and its name."""
    parameter = PARAMETER_OF_FIELD.get(err.field, err.field)
    location = request.locations.get(parameter) if request else None
    expression = [location, parameter] if location else [parameter]
    code = "value" if location else "required"
    return FhirError(422, code, f"{parameter}: {err.message}", expression)


def _value(param: Mapping[str, Any], index: int, name: str, kinds: Sequence[str]) -> tuple[Any, str]:
    for kind in kinds:
        key = f"value{kind}"
        if key in param:
            return param[key], f"Parameters.parameter[{index}].{key}"
    raise FhirError(422, "value", f"parameter {name!r} needs {' or '.join('value' + k for k in kinds)}",
                    [f"Parameters.parameter[{index}]", name])


def _number(raw: Any, where: str, name: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(float(raw)):
        raise FhirError(422, "value", f"{name} must be a number", [where, name])
    return float(raw)


def _datetime(raw: Any, where: str, name: str) -> datetime:
    text = str(raw)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or "T" not in text or moment.tzinfo is None:
        raise FhirError(422, "value", f"{name} needs a date, time and time zone for decay correction, got {text!r}",
                        [where, name])
    return moment


def _lesion(param: Mapping[str, Any], index: int) -> tuple[float, float]:
    parts = {p.get("name"): (j, p) for j, p in enumerate(param.get("part", []))}
    values = []
    for part_name in ("volumeMl", "tumorToNormalRatio"):
        if part_name not in parts:
            raise FhirError(422, "required", f"lesion needs a part {part_name!r}",
                            [f"Parameters.parameter[{index}]", f"lesion.{part_name}"])
        j, part = parts[part_name]
        raw, _ = _value(part, index, f"lesion.{part_name}", ("Decimal", "Integer"))
        values.append(_number(raw, f"Parameters.parameter[{index}].part[{j}]", f"lesion.{part_name}"))
    return values[0], values[1]


def parse_sirt_request(body: Mapping[str, Any]) -> SirtRequest:
    """Read the contract's parameters (and the extras in the module doc) into :class:`PlanInputs`.

    Unknown or repeated (non-repeatable) parameters and values of the wrong type are 422s naming
    the parameter; domain rules (ranges, required inputs per method) are checked by the domain.
    """
    fields: dict[str, Any] = {}
    locations: dict[str, str] = {}
    lesions: list[tuple[float, float]] = []
    patient: dict[str, Any] | None = None
    treatment_text: str | None = None
    every = body.get("parameter", []) or []
    # ``record``: the patient's stored results, added by the gateway (never part of the request's identity)
    records = tuple(p["resource"] for p in every if p.get("name") == RECORD and isinstance(p.get("resource"), dict))
    params = [p for p in every if p.get("name") != RECORD]
    for index, param in enumerate(params):
        name = param.get("name")
        if name == "lesion":
            lesions.append(_lesion(param, index))
            locations.setdefault("lesion.volumeMl", f"Parameters.parameter[{index}]")
            locations.setdefault("lesion.tumorToNormalRatio", f"Parameters.parameter[{index}]")
            continue
        if name in locations:
            raise FhirError(422, "value", f"parameter {name!r} is given more than once",
                            [f"Parameters.parameter[{index}]", str(name)])
        if name in _DECIMALS:
            raw, where = _value(param, index, name, ("Decimal", "Integer"))
            fields[_DECIMALS[name]] = _number(raw, where, name)
        elif name in _CODES:
            raw, where = _value(param, index, name, ("Code", "String"))
            fields[_CODES[name]] = str(raw)
        elif name in _DATETIMES:
            raw, where = _value(param, index, name, ("DateTime", "Instant"))
            fields[_DATETIMES[name]] = _datetime(raw, where, name)
            if name == "treatmentTime":
                treatment_text = str(raw)
        elif name in _BOOLEANS:
            raw, where = _value(param, index, name, ("Boolean",))
            fields[_BOOLEANS[name]] = bool(raw)
        elif name == "patient":
            raw, where = _value(param, index, name, ("Reference",))
            ref = raw.get("reference") if isinstance(raw, Mapping) else None
            if not isinstance(ref, str) or not ref.startswith("Patient/") or len(ref) <= len("Patient/"):
                raise FhirError(422, "value", "patient must reference a Patient (Patient/<id>)", [where, name])
            patient = {"reference": ref}
        else:
            raise FhirError(422, "not-supported", f"unknown parameter {name!r} for $sirt-activity",
                            [f"Parameters.parameter[{index}].name", str(name)])
        locations[str(name)] = where
    if "method" not in fields:
        raise FhirError(422, "required", "parameter 'method' (bsa | mird | partition) is required", ["method"])
    inputs = PlanInputs(**fields)
    if lesions:
        inputs = replace(inputs, extra_lesions=tuple(lesions))
    canonical = sorted(canonical_json(p) for p in params)
    return SirtRequest(inputs, patient, canonical, locations, treatment_text, records)




@dataclass(frozen=True)
class VoxelJobRequest:
    """The parameters of a ``$voxel-dosimetry`` job as the gateway recorded them.

    ``key`` is the canonical JSON of the whole parameter object: the result ids are derived from
    it, so the same request gives the same resources.
    """

    study_uid: str
    administered_activity_gbq: float
    method: str
    segmentation_series_uid: str | None
    patient: str | None
    imaging_study: str | None
    key: str
    registration_series_uid: str | None = None


def voxel_job_request(params: Mapping[str, Any]) -> VoxelJobRequest:
    """Read the job's parameters (already checked by the gateway when it accepted the request)."""
    return VoxelJobRequest(
        study_uid=str(params["studyInstanceUid"]),
        administered_activity_gbq=float(params["administeredActivityGBq"]),
        method=str(params.get("method", "ldm")),
        segmentation_series_uid=params.get("segmentationSeriesUid") or None,
        patient=params.get("patient") or None,
        imaging_study=params.get("imagingStudy") or None,
        key=canonical_json(dict(params)),
        registration_series_uid=params.get("registrationSeriesUid") or None,
    )


# ------------------------------------------------------------------------------ dose comparison

#: ``$dose-comparison``: the two inputs, each a valueReference to a voxel-dosimetry DiagnosticReport.
COMPARISON_INPUTS = ("predicted", "delivered")
_VOI_TEXT = re.compile(r"^(?P<name>.*) \((?P<role>[a-z-]+), [a-z]+ VOI\)$")


@dataclass(frozen=True)
class ComparisonRequest:
    """A parsed ``$dose-comparison`` request: the two results, their reports, the patient."""

    predicted: StudyDoses
    delivered: StudyDoses
    patient: str | None
    canonical: str


def _component_value(obs: Mapping[str, Any], code: str | None, text: str | None = None) -> float | None:
    for comp in obs.get("component") or []:
        concept = comp.get("code") or {}
        codes = {c.get("code") for c in concept.get("coding") or []}
        if (code is not None and code in codes) or (text is not None and concept.get("text") == text
                                                    and not codes):
            value = (comp.get("valueQuantity") or {}).get("value")
            return float(value) if isinstance(value, (int, float)) else None
    return None


def _voi_metrics(obs: Mapping[str, Any], where: str, source: str) -> VoiMetrics:
    site = str((obs.get("bodySite") or {}).get("text", ""))
    match = _VOI_TEXT.match(site)
    dmean = _component_value(obs, "dose-mean")
    if match is None or dmean is None:
        raise FhirError(422, "invalid", f"{where}: Observation/{obs.get('id')} is not a voxel-dosimetry VOI result "
                        "(bodySite text 'name (role, source VOI)' and a dose-mean component)", where)
    share = _component_value(obs, None, "share of the counts")
    return VoiMetrics(match["name"], match["role"], dmean, _component_value(obs, "dose-d70"),
                      _component_value(obs, "dose-v100"), None if share is None else share / 100.0, source)


def _study_doses(name: str, reference: str, index: int, resources: Mapping[str, Mapping[str, Any]]) -> StudyDoses:
    where = f"Parameters.parameter[{index}].valueReference"
    report = resources.get(reference)
    if report is None or report.get("resourceType") != "DiagnosticReport":
        raise FhirError(422, "not-found", f"{name}: {reference} is not a stored DiagnosticReport", where)
    codes = {c.get("code") for c in (report.get("code") or {}).get("coding") or []}
    if "voxel-dosimetry-report" not in codes:
        raise FhirError(422, "invalid", f"{name}: {reference} is not a voxel-dosimetry report", where)
    vois = []
    for item in report.get("result") or []:
        obs = resources.get(str(item.get("reference", "")))
        if obs is None:
            raise FhirError(422, "not-found", f"{name}: {reference} names {item.get('reference')}, which is not "
                            "stored", where)
        vois.append(_voi_metrics(obs, where, str(item["reference"])))
    return StudyDoses(reference, tuple(vois))


def parse_comparison_request(body: Mapping[str, Any]) -> ComparisonRequest:
    """Read ``predicted`` and ``delivered`` and the stored resources the gateway added to the
    Parameters (``resource`` parameters: the two reports and their Observations)."""
    refs: dict[str, tuple[str, int]] = {}
    resources: dict[str, Mapping[str, Any]] = {}
    for i, param in enumerate(body.get("parameter") or []):
        name = param.get("name")
        if name in COMPARISON_INPUTS:
            ref = (param.get("valueReference") or {}).get("reference")
            if not isinstance(ref, str) or not ref.startswith("DiagnosticReport/") or name in refs:
                raise FhirError(422, "value", f"{name} must be given once as a valueReference to "
                                "DiagnosticReport/{id}", f"Parameters.parameter[{i}]")
            refs[name] = (ref, i)
        elif name == "resource" and isinstance(param.get("resource"), dict):
            res = param["resource"]
            resources[f"{res.get('resourceType')}/{res.get('id')}"] = res
        else:
            raise FhirError(422, "not-supported", f"unknown parameter {name!r}", f"Parameters.parameter[{i}]")
    for name in COMPARISON_INPUTS:
        if name not in refs:
            raise FhirError(422, "required", f"{name} is required (valueReference to a voxel-dosimetry "
                            "DiagnosticReport)", name)
    predicted = _study_doses("predicted", *refs["predicted"], resources)
    delivered = _study_doses("delivered", *refs["delivered"], resources)
    subjects = {str((resources[r].get("subject") or {}).get("reference", "")) for r, _ in refs.values()} - {""}
    if len(subjects) > 1:
        raise FhirError(422, "business-rule", f"the two reports are of different patients ({', '.join(sorted(subjects))})",
                        f"Parameters.parameter[{refs['delivered'][1]}].valueReference")
    return ComparisonRequest(predicted, delivered, next(iter(subjects), None),
                             canonical_json([refs["predicted"][0], refs["delivered"][0]]))


def comparison_error(err: DosimetryInputError) -> FhirError:
    """422 naming the input (``predicted`` or ``delivered``) a comparison cannot use."""
    return FhirError(422, "business-rule", f"{err.field}: {err.message}", err.field)


# ------------------------------------------------------------------------------ prior dose records

def _day(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10]) if text else None
    except ValueError:
        return None


def _codes(resource: Mapping[str, Any]) -> set[str]:
    return {str(c.get("code")) for c in (resource.get("code") or {}).get("coding") or []}


def _plan_record(obs: Mapping[str, Any]) -> DoseRecord:
    return DoseRecord(f"Observation/{obs.get('id')}", "plan", _day(obs.get("effectiveDateTime")),
                      _component_value(obs, "lungDoseGy"), _component_value(obs, "normalLiverDoseGy"))


def _voxel_record(report: Mapping[str, Any], resources: Mapping[str, Mapping[str, Any]]) -> DoseRecord | None:
    """A post-treatment voxel result as a record: lung dose = mass-weighted Dmean of the lung VOIs,
    normal-liver dose = the Dmean of a liver VOI named as the normal liver; the treatment day is
    the Observations' effectiveDateTime (the administration). None for an MAA simulation (a
    prediction, not a treatment: category ``dose-simulation``)."""
    observations = [resources[str(i.get("reference"))] for i in report.get("result") or []
                    if str(i.get("reference")) in resources]
    simulated = any("dose-simulation" in {c.get("code") for cat in o.get("category") or []
                                          for c in cat.get("coding") or []} for o in observations)
    if simulated or "MAA simulation" in str(report.get("conclusion")):
        return None
    lung_mass = lung_dose_mass = 0.0
    normal: float | None = None
    when: str | None = None
    for obs in observations:
        voi = _voi_metrics(obs, f"record DiagnosticReport/{report.get('id')}", f"Observation/{obs.get('id')}")
        when = when or obs.get("effectiveDateTime")
        if voi.role == "lung":
            mass = _component_value(obs, None, "VOI mass") or 1.0
            lung_mass += mass
            lung_dose_mass += mass * voi.dmean_gy
        elif voi.role == "normal-liver" or (voi.role == "liver" and "normal" in voi.name.lower()):
            normal = voi.dmean_gy
    return DoseRecord(f"DiagnosticReport/{report.get('id')}", "post-treatment", _day(when),
                      lung_dose_mass / lung_mass if lung_mass > 0 else None, normal)


def dose_records(resources: Sequence[Mapping[str, Any]], own_plan: str) -> list[DoseRecord]:
    """The plans and post-treatment voxel results among ``resources`` (the gateway's ``record``
    parameters) as domain records; ``own_plan`` (this request's plan, when stored before) is left out."""
    by_ref = {f"{r.get('resourceType')}/{r.get('id')}": r for r in resources}
    out: list[DoseRecord] = []
    for ref, res in by_ref.items():
        if ref == own_plan:
            continue
        if res.get("resourceType") == "Observation" and "sirt-activity-plan" in _codes(res):
            out.append(_plan_record(res))
        elif res.get("resourceType") == "DiagnosticReport" and "voxel-dosimetry-report" in _codes(res):
            record = _voxel_record(res, by_ref)
            if record is not None:
                out.append(record)
    return out
