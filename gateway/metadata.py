"""``/fhir/metadata``: the CapabilityStatement (derived from the registry of interactions and
search parameters), one OperationDefinition per operation, the project CodeSystems and the
StructureDefinitions of its extensions, each readable by id and searchable by ``url``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request

from gateway.store.registry import (
    INTERACTIONS,
    SERVED_TYPES,
    SYSTEM_INTERACTIONS,
    SearchParam,
    declared_params,
    include_targets,
    revinclude_sources,
)
from netliver import __version__
from netliver.fhir.codesystems import CANONICAL_BASE, CODESYSTEMS, codesystem_resource
from netliver.fhir.extensions import EXTENSIONS, structure_definition
from netliver.fhir.models import FHIR_VERSION
from netliver.fhir.outcome import FhirError
from netliver.web import fhir_response

if TYPE_CHECKING:
    from gateway.deps import GatewayDeps

__all__ = ["CONFORMANCE_TYPES", "OPERATIONS", "RESOURCE_TYPES", "capability_statement", "conformance_resources",
           "create_metadata_blueprint", "operation_definition", "search_conformance"]

def _param(name: str, use: str, min_: int, max_: str, type_: str, doc: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "use": use, "min": min_, "max": max_}
    if type_:
        out["type"] = type_
    if doc:
        out["documentation"] = doc
    return out


_SIRT_IN = [
    _param("method", "in", 1, "1", "code", "bsa | mird | partition"),
    _param("device", "in", 0, "1", "code", "resin | glass"),
    _param("heightCm", "in", 0, "1", "decimal"), _param("weightKg", "in", 0, "1", "decimal"),
    _param("bsaM2", "in", 0, "1", "decimal", "instead of height and weight"),
    _param("tumorInvolvement", "in", 0, "1", "decimal", "fraction 0-1"),
    _param("liverVolumeMl", "in", 0, "1", "decimal", "whole liver, tumour included"),
    _param("tumorVolumeMl", "in", 0, "1", "decimal"),
    _param("perfusedFraction", "in", 0, "1", "decimal", "fraction of the liver treated, default 1"),
    _param("lungShuntFraction", "in", 0, "1", "decimal", "fraction 0-1"),
    _param("tumorToNormalRatio", "in", 0, "1", "decimal"),
    _param("targetDoseGy", "in", 0, "1", "decimal", "MIRD: perfused liver; partition: tumour"),
    _param("normalLiverLimitGy", "in", 0, "1", "decimal"),
    _param("lungLimitGy", "in", 0, "1", "decimal", "default 30"),
    _param("priorLungDoseGy", "in", 0, "1", "decimal", "default 0"),
    _param("lungMassKg", "in", 0, "1", "decimal", "default 1.0"),
    _param("tissueDensityGPerMl", "in", 0, "1", "decimal", "default 1.03"),
    _param("calibrationTime", "in", 0, "1", "dateTime"), _param("treatmentTime", "in", 0, "1", "dateTime"),
    _param("doseConstant", "in", 0, "1", "decimal", "Gy·kg/GBq, default 49.67"),
    _param("patient", "in", 0, "1", "Reference", "the patient the plan is for (optional); the prior lung and "
           "normal-liver doses then come from that patient's stored plans and post-treatment dosimetry"),
    _param("protocol", "in", 0, "1", "code", "protocol target table producing warnings"),
    _param("bsaFormula", "in", 0, "1", "code", "dubois (default, the resin device's formula) | mosteller"),
    _param("vialResidualFraction", "in", 0, "1", "decimal", "MIRD: activity left in the vial, 0-1"),
    _param("cumulativeLungLimitGy", "in", 0, "1", "decimal", "default 50"),
    _param("halfLifeH", "in", 0, "1", "decimal", "Y-90 half-life, default 64.1"),
    _param("compromisedLiver", "in", 0, "1", "boolean", "pretreated or compromised liver (normal-liver limit 30 Gy)"),
    _param("priorPrrt", "in", 0, "1", "boolean", "prior PRRT (flagged)"),
    {**_param("lesion", "in", 0, "*", "", "partition model with several tumours, one per further tumour"),
     "part": [_param("volumeMl", "in", 1, "1", "decimal", "tumour volume"),
              _param("tumorToNormalRatio", "in", 1, "1", "decimal", "uptake ratio tumour : normal liver")]},
]
_SIRT_OUT = [
    _param("activityGBq", "out", 1, "1", "decimal", "at treatment time"),
    _param("activityAtCalibrationGBq", "out", 0, "1", "decimal"),
    _param("tumorDoseGy", "out", 0, "1", "decimal"), _param("normalLiverDoseGy", "out", 0, "1", "decimal"),
    _param("lungDoseGy", "out", 0, "1", "decimal"), _param("doseConstant", "out", 1, "1", "decimal"),
    _param("limitingFactor", "out", 1, "1", "code", "tumor-target | normal-liver-limit | lung-limit | bsa | mird"),
    _param("lsfReduction", "out", 1, "1", "decimal"),
    _param("status", "out", 1, "1", "code", "ok | caution | contraindicated"),
    _param("warning", "out", 0, "*", "string"),
    _param("note", "out", 0, "*", "string", "the result under the other dose constants and half-life"),
    _param("perfusedLiverDoseGy", "out", 0, "1", "decimal"), _param("cumulativeLungDoseGy", "out", 0, "1", "decimal"),
    _param("lesionDoseGy", "out", 0, "*", "decimal"), _param("bsaM2", "out", 0, "1", "decimal"),
    _param("priorLungDoseGy", "out", 0, "1", "decimal", "with patient: the lung dose of the earlier treatments"),
    _param("priorRecord", "out", 0, "*", "Reference", "with patient: each stored record the prior doses come from"),
    {**_param("priorTreatment", "out", 0, "*", "", "with patient: one per earlier treatment"),
     "part": [_param("date", "out", 1, "1", "date", "the treatment day"),
              _param("source", "out", 1, "1", "code", "plan | post-treatment: the record the doses come from"),
              _param("lungDoseGy", "out", 1, "1", "decimal"),
              _param("normalLiverDoseGy", "out", 0, "1", "decimal"),
              _param("record", "out", 1, "*", "Reference", "the stored record(s) of that treatment")]},
]

#: code -> (title, system?, type?, instance?, resource types, parameters, description)
OPERATIONS: dict[str, dict[str, Any]] = {
    "evaluate-eligibility": {
        "title": "Evaluate eligibility for liver-directed therapy",
        "system": True, "type": False, "instance": True, "resource": ["Patient"],
        "description": "For every therapy code, an Observation with the eligibility status, the reasons "
                       "(rule id and source), the missing inputs and the evidence. System level: POST a Bundle "
                       "with one Patient and that patient's resources; instance level: no body, the "
                       "patient's resources are gathered from the FHIR store.",
        "parameter": [
            _param("input", "in", 0, "1", "Bundle", "system level: the patient's resources"),
            _param("date", "in", 0, "1", "date", "evaluation date (default today)"),
            _param("return", "out", 1, "1", "Bundle", "collection: one Observation per therapy code"),
        ],
    },
    "tumor-response": {
        "title": "Tumour response versus baseline and nadir",
        "system": True, "type": False, "instance": False, "resource": [],
        "description": "RECIST 1.1, mRECIST, EASL, Choi, PERCIST or iRECIST categories per follow-up "
                       "assessment and the best overall response, from lesion Observations over time.",
        "parameter": [
            _param("criteria", "in", 0, "1", "code", "recist-1.1 (default) | mrecist | choi | percist | irecist | easl"),
            _param("confirmationDays", "in", 0, "1", "integer", "best overall response: days after which CR/PR must be seen again (default 0: not required)"),
            _param("minSdDays", "in", 0, "1", "integer", "best overall response: minimum days after baseline for SD (default 42)"),
            _param("biochemicalThresholdPercent", "in", 0, "1", "decimal", "tumour-marker change called response or progression (default 50)"),
            _param("treatedLesions", "in", 0, "1", "code", "not-evaluable | measure: lesions treated locally after baseline"),
            _param("input", "in", 1, "1", "Bundle", "lesion Observations, BodyStructures, Procedures, markers, labs"),
            _param("return", "out", 1, "1", "Bundle", "collection of response Observations"),
        ],
    },
    "sirt-activity": {
        "title": "Plan Y-90 SIRT activity",
        "system": True, "type": False, "instance": False, "resource": [],
        "description": "BSA (resin), single-compartment MIRD (glass) or partition-model activity with "
                       "predicted doses, lung-shunt limits and decay correction.",
        "parameter": _SIRT_IN + _SIRT_OUT,
    },
    "dose-comparison": {
        "title": "Predicted versus delivered dose per VOI",
        "system": True, "type": False, "instance": False, "resource": [],
        "description": "Compares a Tc-99m MAA simulation with the post-treatment Y-90 voxel dosimetry, VOI by "
                       "VOI (matched by name): predicted and delivered Dmean, D70 and V100, their differences "
                       "in Gy and in % of the predicted value, the lung shunt fraction both ways, and a flag "
                       "when a tumour's Dmean differs by more than 20 %. The two reports and their "
                       "Observations are read from the store.",
        "parameter": [
            _param("predicted", "in", 1, "1", "Reference", "DiagnosticReport of the MAA voxel dosimetry"),
            _param("delivered", "in", 1, "1", "Reference", "DiagnosticReport of the post-treatment voxel dosimetry"),
            _param("return", "out", 1, "1", "Bundle", "collection: the dose-comparison DiagnosticReport, then "
                   "one Observation per VOI and one for the lung shunt"),
        ],
    },
    "voxel-dosimetry": {
        "title": "Voxel dosimetry of a post-SIRT or MAA study (asynchronous)",
        "system": True, "type": False, "instance": False, "resource": [],
        "description": "Fetches a SPECT or PET study with its CT from the PACS, computes the absorbed-dose "
                       "map (local deposition or kernel convolution) and DVH metrics per VOI. With "
                       "Prefer: respond-async answers 202: Content-Location is the status URL (202 with X-Progress "
                       "while running, then 200 with a batch-response Bundle), Location the Task.",
        "parameter": [
            _param("studyInstanceUid", "in", 1, "1", "string"),
            _param("administeredActivityGBq", "in", 1, "1", "decimal"),
            _param("method", "in", 0, "1", "code", "ldm | dvk"),
            _param("segmentationSeriesUid", "in", 0, "1", "string", "DICOM SEG or RTSTRUCT with the VOIs"),
            _param("registrationSeriesUid", "in", 0, "1", "string",
                   "DICOM Spatial Registration (rigid) of a CT in another Frame of Reference; default: the study's"),
            _param("patient", "in", 0, "1", "Reference"),
            _param("return", "out", 1, "1", "Task", "the job; on completion its output references the results"),
        ],
    },
}


def operation_definition(code: str) -> dict[str, Any]:
    op = OPERATIONS[code]
    return _clean({
        "resourceType": "OperationDefinition",
        "id": code,
        "url": f"{CANONICAL_BASE}/OperationDefinition/{code}",
        "version": __version__,
        "name": "".join(part.capitalize() for part in code.split("-")),
        "title": op["title"],
        "status": "active",
        "kind": "operation",
        "publisher": "netliver",
        "description": op["description"],
        "affectsState": True,
        "code": code,
        "resource": op["resource"] or None,
        "system": op["system"],
        "type": op["type"],
        "instance": op["instance"],
        "parameter": op["parameter"],
    })


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


#: Conformance resources the gateway serves itself (read and search, never written).
CONFORMANCE_TYPES = ("CapabilityStatement", "OperationDefinition", "CodeSystem", "StructureDefinition")
#: Their search parameters: name → (type, element).
CONFORMANCE_PARAMS = {"url": ("uri", "url"), "name": ("string", "name"), "version": ("token", "version"),
                      "status": ("token", "status"), "_id": ("token", "id")}
_CONDITIONAL = {"conditionalCreate": True, "conditionalUpdate": True, "conditionalDelete": "single",
                "conditionalRead": "not-supported"}
_VALIDATE = "http://hl7.org/fhir/OperationDefinition/Resource-validate"


def _search_param(param: SearchParam) -> dict[str, Any]:
    out: dict[str, Any] = {"name": param.name, "type": param.type}
    if param.definition:
        out["definition"] = param.definition
    if param.documentation:
        out["documentation"] = param.documentation
    return out


def _resource_entry(rtype: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": rtype,
        "interaction": [{"code": c} for c in INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        **_CONDITIONAL,
        "searchInclude": list(include_targets(rtype)) or None,
        "searchRevInclude": list(revinclude_sources(rtype)) or None,
        "searchParam": [_search_param(p) for p in declared_params(rtype)],
        "operation": [{"name": "validate", "definition": _VALIDATE}],
    }
    if rtype == "Patient":
        entry["operation"].append({"name": "evaluate-eligibility",
                                   "definition": f"{CANONICAL_BASE}/OperationDefinition/evaluate-eligibility"})
    return _clean(entry)


def _conformance_entry(rtype: str) -> dict[str, Any]:
    return {"type": rtype, "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": name, "type": ptype} for name, (ptype, _) in CONFORMANCE_PARAMS.items()]}


#: Resource types served by the REST API with their own parameters (``rest.resource``).
RESOURCE_TYPES = SERVED_TYPES


def capability_statement(base_url: str, auth_mode: str, resource_types: Sequence[str] = SERVED_TYPES, *,
                         cors: bool = False) -> dict[str, Any]:
    """The CapabilityStatement, derived from the registry (:mod:`gateway.store.registry`)."""
    resources = [_resource_entry(rtype) for rtype in resource_types]
    resources += [_conformance_entry(rtype) for rtype in CONFORMANCE_TYPES]
    security: dict[str, Any] = {"cors": cors, "description": (
        "SMART on FHIR: Bearer JWT (RS256, RS384, ES384) with system/ or user/ scopes, or patient/ scopes "
        "confined to the token's patient"
        if auth_mode == "jwt" else "Authentication is OFF (local development only)")}
    if auth_mode == "jwt":
        security["service"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                            "code": "SMART-on-FHIR"}]}]
    return {
        "resourceType": "CapabilityStatement",
        "id": "netliver",
        "url": f"{CANONICAL_BASE}/CapabilityStatement/netliver",
        "version": __version__,
        "name": "NetliverGateway",
        "title": "netliver gateway",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "netliver",
        "kind": "instance",
        "software": {"name": "netliver", "version": __version__},
        "implementation": {"description": "netliver gateway", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": security,
            "resource": resources,
            "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
            "searchParam": [{"name": "_count", "type": "number"}, {"name": "_offset", "type": "number"}],
            "operation": [{"name": code, "definition": f"{CANONICAL_BASE}/OperationDefinition/{code}"}
                          for code in OPERATIONS],
        }],
    }


def conformance_resources(base_url: str, auth_mode: str, rtype: str, *, cors: bool = False) -> list[dict[str, Any]]:
    """Every conformance resource of one type the gateway serves."""
    if rtype == "CapabilityStatement":
        return [capability_statement(base_url, auth_mode, cors=cors)]
    if rtype == "OperationDefinition":
        return [operation_definition(code) for code in OPERATIONS]
    if rtype == "CodeSystem":
        return [codesystem_resource(cid, __version__) for cid in CODESYSTEMS]
    return [structure_definition(eid, __version__) for eid in EXTENSIONS]


def search_conformance(resources: list[dict[str, Any]], params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The resources matching every parameter (``url`` and ``version`` exact, ``url`` may carry
    ``|version``; ``name`` from its start, case-insensitive); 400 naming an unknown parameter."""
    found = resources
    for name, value in params:
        if name in ("_count", "_offset", "_format", "_summary", "_total", "_elements", "_sort", "_pretty"):
            continue
        if name not in CONFORMANCE_PARAMS:
            raise FhirError(400, "not-supported", f"unknown search parameter {name!r} for conformance resources "
                            f"(supported: {', '.join(CONFORMANCE_PARAMS)})", name)
        element = CONFORMANCE_PARAMS[name][1]
        alternatives = value.split(",")
        if name == "url":
            alternatives = [alt.split("|", 1)[0] for alt in alternatives]
        if name == "name":
            found = [r for r in found if any(str(r.get(element, "")).lower().startswith(a.lower()) for a in alternatives)]
        else:
            found = [r for r in found if str(r.get(element, "")) in alternatives]
    return found


def create_metadata_blueprint(deps: GatewayDeps) -> Blueprint:
    bp = Blueprint("metadata", __name__)

    @bp.get("/fhir/metadata")
    def metadata() -> Response:
        cors = bool(deps.settings.cors_allowed_origins)
        return fhir_response(capability_statement(deps.fhir_base(), deps.settings.auth_mode, cors=cors))

    def served(rtype: str) -> list[dict[str, Any]]:
        from gateway.auth import require_scopes
        require_scopes(read=(rtype,))
        return conformance_resources(deps.fhir_base(), deps.settings.auth_mode, rtype,
                                     cors=bool(deps.settings.cors_allowed_origins))

    def read(rtype: str, rid: str) -> Response:
        for resource in served(rtype):
            if resource["id"] == rid:
                return fhir_response(resource)
        raise FhirError(404, "not-found", f"no {rtype} {rid!r}", f"{rtype}.id")

    def search(rtype: str) -> Response:
        matches = search_conformance(served(rtype), list(request.args.items(multi=True)))
        base = deps.fhir_base()
        return fhir_response({"resourceType": "Bundle", "type": "searchset", "total": len(matches),
                              "link": [{"relation": "self", "url": request.url}],
                              "entry": [{"fullUrl": f"{base}/{rtype}/{r['id']}", "resource": r,
                                         "search": {"mode": "match"}} for r in matches]})

    for rtype in CONFORMANCE_TYPES:
        bp.add_url_rule(f"/fhir/{rtype}/<rid>", f"read_{rtype}", lambda rid, t=rtype: read(t, rid))
        bp.add_url_rule(f"/fhir/{rtype}", f"search_{rtype}", lambda t=rtype: search(t))
    return bp
