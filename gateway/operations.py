"""The contract's synchronous operations, routed to their services and written back.

Each view checks the caller's scopes, forwards the body to the service over HTTP, writes the
service's results (with their Provenance) to the FHIR store in one transaction, and only then
answers the output. If the store cannot take the results the caller gets 503 and nothing is
half-written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, current_app, g, request

from gateway.auth import require_scopes
from gateway.services import ServiceClient
from gateway.writeback import write_results
from netliver.fhir.codesystems import CANONICAL_BASE
from netliver.fhir.outcome import FhirError
from netliver.report.presented import with_presented_forms
from netliver.web import fhir_response, read_json_body

__all__ = ["ELIGIBILITY_READS", "RESULT_TAG", "create_operations_blueprint", "gather_patient_bundle", "parameters_of",
           "tag_results"]

#: Tag on every resource the services write, so gathered inputs never include earlier results.
RESULT_TAG = {"system": f"{CANONICAL_BASE}/CodeSystem/tag", "code": "derived-result",
              "display": "Result computed by netliver"}

ELIGIBILITY_READS = ("Patient", "Observation", "Condition", "Procedure", "MedicationStatement",
                     "AllergyIntolerance", "ImagingStudy", "BodyStructure")
RESULT_WRITES = ("Observation", "DiagnosticReport", "Provenance")

#: (resource type, search parameter naming the patient) gathered for Patient/{id}/$evaluate-eligibility.
_PATIENT_COMPARTMENT = (
    ("Observation", "subject"), ("Condition", "subject"), ("Procedure", "subject"),
    ("MedicationStatement", "subject"), ("AllergyIntolerance", "patient"),
    ("ImagingStudy", "subject"), ("BodyStructure", "patient"),
)


def _body(expected: tuple[str, ...]) -> dict[str, Any]:
    data = read_json_body()
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise FhirError(400, "invalid", "the body is not a FHIR resource (no resourceType)", "resourceType")
    if data["resourceType"] not in expected:
        raise FhirError(422, "not-supported",
                        f"expected a {' or '.join(expected)}, got {data['resourceType']}", "resourceType")
    return data


def parameters_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``Parameters.parameter`` as a list of objects; 400 naming the element when it is not."""
    params = body.get("parameter")
    if params is None:
        return []
    if not isinstance(params, list):
        raise FhirError(400, "structure", "Parameters.parameter must be a list", "Parameters.parameter")
    for i, param in enumerate(params):
        if not isinstance(param, dict):
            raise FhirError(400, "structure", "each parameter must be an object", f"Parameters.parameter[{i}]")
    return params


def tag_results(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``resources`` carrying :data:`RESULT_TAG` (and no earlier copy of it)."""
    out = []
    for res in resources:
        res = dict(res)
        meta = dict(res.get("meta") or {})
        tags = [t for t in meta.get("tag", []) if t.get("code") != RESULT_TAG["code"]]
        meta["tag"] = [*tags, RESULT_TAG]
        res["meta"] = meta
        out.append(res)
    return out


def _is_result(resource: dict[str, Any]) -> bool:
    return any(t.get("system") == RESULT_TAG["system"] and t.get("code") == RESULT_TAG["code"]
               for t in (resource.get("meta") or {}).get("tag", []))


def gather_patient_bundle(store: Any, patient_id: str, base_url: str, page_size: int = 500,
                          prefetched: Mapping[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The patient's resources from the store as a ``searchset`` Bundle (results excluded).

    ``prefetched`` maps a resource type to the resources a caller already holds (CDS Hooks
    prefetch); those types are taken from it, every other type is read from the store."""
    prefetched = prefetched or {}
    patients = prefetched.get("Patient")
    patient = patients[0] if patients else store.read("Patient", patient_id)
    entries: list[dict[str, Any]] = [{"fullUrl": f"{base_url}/Patient/{patient_id}", "resource": patient}]
    for rtype, param in _PATIENT_COMPARTMENT:
        if rtype in prefetched:
            entries.extend({"resource": res} for res in prefetched[rtype] if not _is_result(res))
            continue
        offset = 0
        while True:
            page = store.search(rtype, [(param, f"Patient/{patient_id}"), ("_count", str(page_size)),
                                        ("_offset", str(offset))], base_url)
            batch = [e for e in page.get("entry", []) if e.get("resource")]
            entries.extend(e for e in batch if not _is_result(e["resource"]))
            offset += len(batch)
            if not batch or offset >= int(page.get("total", offset)):
                break
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


def _input_resources(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of the request's Bundle (the body, or the ``input`` parameter's resource)."""
    if body.get("resourceType") == "Parameters":
        body = next((p["resource"] for p in body.get("parameter") or []
                     if isinstance(p, dict) and p.get("name") == "input" and isinstance(p.get("resource"), dict)), {})
    entries = body.get("entry")
    return [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)] \
        if isinstance(entries, list) else []


def create_operations_blueprint(get_store: Callable[[], Any], get_services: Callable[[], ServiceClient],
                                base_url_of: Callable[[], str]) -> Blueprint:
    bp = Blueprint("operations", __name__)

    def run(service: str, operation: str, body: dict[str, Any], params: dict[str, str]) -> Response:
        result = get_services().call(service, operation, body, params, g.get("request_id", ""))
        try:
            write_results(get_store(), tag_results(with_presented_forms(result.write, _input_resources(body))),
                          base_url_of())
        except FhirError as err:
            if err.status < 500:
                current_app.logger.error("a service result was refused by the store: %s", err)
                raise FhirError(502, "exception",
                                f"the {service} service produced a result the store refused: {err.diagnostics}") from err
            raise
        return fhir_response(result.output)

    @bp.post("/fhir/$evaluate-eligibility")
    def evaluate_eligibility() -> Response:
        require_scopes(read=ELIGIBILITY_READS, write=RESULT_WRITES)
        body = _body(("Bundle",))
        return run("eligibility", "evaluate-eligibility", body, dict(request.args))

    @bp.post("/fhir/Patient/<patient_id>/$evaluate-eligibility")
    def evaluate_patient_eligibility(patient_id: str) -> Response:
        require_scopes(read=ELIGIBILITY_READS, write=RESULT_WRITES)
        params = dict(request.args)
        if request.get_data(cache=True).strip():
            # The record comes from the store; a body may only be Parameters (e.g. the date).
            body = _body(("Parameters",))
            for i, param in enumerate(parameters_of(body)):
                if param.get("name") == "date" and isinstance(param.get("valueDate"), str):
                    params["date"] = param["valueDate"]
                else:
                    raise FhirError(422, "not-supported", f"unknown parameter {param.get('name')!r}: this form "
                                    "reads the patient's resources from the store and takes only 'date'",
                                    f"Parameters.parameter[{i}]")
        bundle = gather_patient_bundle(get_store(), patient_id, base_url_of())
        return run("eligibility", "evaluate-eligibility", bundle, params)

    @bp.post("/fhir/$tumor-response")
    def tumor_response() -> Response:
        require_scopes(read=("Observation", "BodyStructure", "Procedure"), write=RESULT_WRITES)
        body = _body(("Bundle",))
        return run("response", "tumor-response", body, dict(request.args))

    @bp.post("/fhir/$sirt-activity")
    def sirt_activity() -> Response:
        require_scopes(write=("Observation", "Provenance"))
        body = _body(("Parameters",))
        return run("dosimetry", "sirt-activity", body, dict(request.args))

    return bp
