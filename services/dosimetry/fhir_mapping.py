"""FHIR mapping of the dosimetry service: ``$sirt-activity`` Parameters in, plan resources out.

The one module of the service that knows FHIR JSON shapes (docs/ARCHITECTURE.md). Inputs are
read from the caller's JSON (not a model round-trip) so decimals keep their digits; outputs are
plain R4 JSON built with :mod:`netliver.fhir.builders`.

Parameter names are the contract's ("SIRT activity planning", CONTRACT.md) plus these optional
extras: ``patient`` (valueReference to the Patient the plan is for), ``protocol`` (valueCode, a
key of :data:`services.dosimetry.domain.protocols.PROTOCOLS`), ``bsaFormula`` (valueCode
``dubois`` (default) | ``mosteller``), ``vialResidualFraction``, ``cumulativeLungLimitGy`` (default 50),
``halfLifeH`` (default 64.1; EANM 2022 uses 64.2), ``compromisedLiver`` and ``priorPrrt``
(valueBoolean), and repeated ``lesion`` parameters (parts ``volumeMl`` and ``tumorToNormalRatio``)
for further tumour compartments of the multi-lesion partition model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from netliver.fhir.builders import (
    OperationResult,
    canonical_json,
    codeable,
    deterministic_id,
    provenance,
    quantity,
    reference,
)
from netliver.fhir.codesystems import CODESYSTEMS, OBSERVATION_CODE_SYSTEM
from netliver.fhir.outcome import FhirError
from services.dosimetry.domain.constants import (
    DOSE_CONSTANTS,
    Y90_HALF_LIFE_EANM_2022_H,
    Y90_HALF_LIFE_H,
)
from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.planning import PlanInputs, SirtPlan

__all__ = ["PLAN_COMPONENT_CODES", "SirtRequest", "input_error", "parse_sirt_request", "sirt_result"]

SERVICE = "dosimetry"
OPERATION = "sirt-activity"

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

_PLAN_COMPONENTS = ("activityGBq", "activityAtCalibrationGBq", "tumorDoseGy", "normalLiverDoseGy",
                    "perfusedLiverDoseGy", "lungDoseGy", "cumulativeLungDoseGy", "doseConstant", "lsfReduction",
                    "limitingFactor", "status")
#: Component codes of the plan Observation (published in OBSERVATION_CODE_SYSTEM), named like the
#: outputs, with their displays.
PLAN_COMPONENT_CODES: dict[str, str] = {
    c.code: c.display for c in CODESYSTEMS["observation-code"].concepts if c.code in _PLAN_COMPONENTS}
if len(PLAN_COMPONENT_CODES) != len(_PLAN_COMPONENTS):  # pragma: no cover - guards the shared CodeSystem
    raise RuntimeError("the observation-code CodeSystem lacks SIRT plan component codes")


@dataclass(frozen=True)
class SirtRequest:
    """A parsed ``$sirt-activity`` request."""

    inputs: PlanInputs
    patient: dict[str, Any] | None
    canonical: list[Any]
    locations: dict[str, str] = field(default_factory=dict)  # parameter name -> FHIRPath
    treatment_time_text: str | None = None


def input_error(err: DosimetryInputError, request: SirtRequest | None) -> FhirError:
    """422 naming the parameter: its indexed path when given, and its name."""
    location = request.locations.get(err.parameter) if request else None
    expression = [location, err.parameter] if location else [err.parameter]
    code = "value" if location else "required"
    return FhirError(422, code, f"{err.parameter}: {err.message}", expression)


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
    params = body.get("parameter", []) or []
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
    return SirtRequest(inputs, patient, canonical, locations, treatment_text)


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


def sirt_result(plan: SirtPlan, request: SirtRequest, version: str) -> OperationResult:
    """The ``$sirt-activity`` answer: output Parameters, and the plan Observation with its
    Provenance to write (deterministic ids over the canonical input)."""
    obs_id = deterministic_id(SERVICE, OPERATION, request.canonical)
    rows = _outputs(plan)
    output_params: list[dict[str, Any]] = [{"name": n, f"value{k}": v} for n, k, v, _ in rows]
    output_params.append({"name": "plan", "valueReference": reference("Observation", obs_id)})
    components = [_component(n, k, v, u) for n, k, v, u in rows if n in PLAN_COMPONENT_CODES]
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
    if plan.warnings:
        observation["note"] = [{"text": str(w)} for w in plan.warnings]
    half_life_policy = ("https://netliver.org/fhir/policy/y90-half-life/"
                        f"{'eanm-2022' if plan.half_life_h == Y90_HALF_LIFE_EANM_2022_H else 'nuclear-data' if plan.half_life_h == Y90_HALF_LIFE_H else 'custom'}"
                        f"?value={plan.half_life_h:g}")
    prov = provenance(
        targets=[reference("Observation", obs_id)], service=SERVICE, version=version,
        inputs=[request.patient] if request.patient else [], activity=OPERATION,
        policy=[_dose_constant_policy(plan.dose_constant), plan.protocol.policy_uri, half_life_policy])
    output = {"resourceType": "Parameters", "parameter": output_params}
    return OperationResult(output=output, write=[observation, prov])
