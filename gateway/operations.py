"""The contract's synchronous operations, routed to their services and written back.

Each view checks the caller's scopes, forwards the body to the service over HTTP, writes the
service's results (with their Provenance) to the FHIR store in one transaction, and only then
answers the output. If the store cannot take the results the caller gets 503 and nothing is
half-written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, g, request

from gateway.auth import require_scopes
from gateway.compartment import check_input_bundle, check_results, in_compartment, outside
from gateway.dose_records import (
    DOSE_READS,
    with_compared_reports,
    with_lesion_doses,
    with_patient_dose_records,
)
from gateway.metadata import OPERATIONS
from gateway.patient_record import ELIGIBILITY_READS, gather_patient_bundle
from gateway.writeback import tag_results, write_results
from netliver.fhir.outcome import FhirError
from netliver.fhir.parameters import parameters_of
from netliver.web import fhir_response, read_json_body

if TYPE_CHECKING:
    from gateway.deps import GatewayDeps

__all__ = ["RESULT_WRITES", "bundle_input", "create_operations_blueprint"]

#: What every synchronous operation writes back.
RESULT_WRITES = ("Observation", "DiagnosticReport", "Provenance")


def _body(expected: tuple[str, ...]) -> dict[str, Any]:
    data = read_json_body()
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise FhirError(400, "invalid", "the body is not a FHIR resource (no resourceType)", "resourceType")
    if data["resourceType"] not in expected:
        raise FhirError(422, "not-supported",
                        f"expected a {' or '.join(expected)}, got {data['resourceType']}", "resourceType")
    return data


#: FHIR data type of an OperationDefinition parameter → its ``Parameters.parameter.value[x]``.
_VALUE_KEYS = {"code": "valueCode", "integer": "valueInteger", "decimal": "valueDecimal",
               "date": "valueDate", "dateTime": "valueDateTime", "string": "valueString",
               "boolean": "valueBoolean"}


def _query_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def bundle_input(body: dict[str, Any], operation: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The input Bundle and the other input parameters (as query values) of an operation whose
    OperationDefinition declares ``input`` (a Bundle): the body is that Bundle, or a
    ``Parameters`` whose ``input`` parameter holds it beside the other declared parameters.
    422 naming the element for an unknown, mistyped, repeated or missing parameter."""
    if body["resourceType"] == "Bundle":
        return body, {}
    declared = {p["name"]: p.get("type", "") for p in OPERATIONS[operation]["parameter"] if p["use"] == "in"}
    bundle: dict[str, Any] | None = None
    values: dict[str, str] = {}
    for i, param in enumerate(parameters_of(body)):
        name, where = param.get("name"), f"Parameters.parameter[{i}]"
        if name not in declared:
            raise FhirError(422, "not-supported", f"${operation} has no input parameter {name!r} "
                            f"(declared: {', '.join(sorted(declared))})", f"{where}.name")
        if (name == "input" and bundle is not None) or name in values:
            raise FhirError(422, "invalid", f"parameter {name} given twice", f"{where}.name")
        if name == "input":
            resource = param.get("resource")
            if not isinstance(resource, dict) or resource.get("resourceType") != "Bundle":
                raise FhirError(422, "invalid", "input must hold a Bundle in 'resource'", f"{where}.resource")
            bundle = resource
            continue
        key = _VALUE_KEYS.get(declared[str(name)], "")
        if key not in param:
            raise FhirError(422, "invalid", f"{name} needs {key}", f"{where}.{key}")
        values[str(name)] = _query_text(param[key])
    if bundle is None:
        raise FhirError(422, "required", f"${operation} needs the input Bundle",
                        "Parameters.parameter.where(name='input')")
    return bundle, values


def _input_resources(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of the request's Bundle (the body, or the ``input`` parameter's resource)."""
    if body.get("resourceType") == "Parameters":
        body = next((p["resource"] for p in body.get("parameter") or []
                     if isinstance(p, dict) and p.get("name") == "input" and isinstance(p.get("resource"), dict)), {})
    entries = body.get("entry")
    return [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)] \
        if isinstance(entries, list) else []


def _as_sent(body: dict[str, Any]) -> dict[str, Any] | bytes:
    """The caller's request bytes when ``body`` is the request body itself (the gateway changed
    nothing): the service gets them as sent, not parsed and serialised again."""
    return request.get_data(cache=True) if body is g.get("json_body") else body


def run_operation(deps: GatewayDeps, service: str, operation: str, body: dict[str, Any],
                  params: dict[str, str], patient: str | None = None) -> dict[str, Any]:
    """Call the service's operation, write its results back (tagged, with their Provenance) in
    one transaction, and answer its output. A result the store refuses is the service's fault
    (502), a store that is down stays 503. With ``patient`` (a caller confined to that patient's
    compartment) a result of anyone else is 403 and nothing is written."""
    result = deps.services.call(service, operation, _as_sent(body), params, g.get("request_id", ""))
    if patient is not None:
        check_results(result.write, patient)
    try:
        # Each DiagnosticReport names its figures (PNG) and itself (PDF) for EHRs without the page,
        # by a url relative to this server's FHIR base (``Binary/<id>``): they are drawn on their
        # first read (gateway.binary), not before this write.
        # (Imported here: matplotlib is loaded in the background at start, see gateway.webapp.)
        from netliver.report.presented import with_form_links

        written = with_form_links(result.write, _input_resources(body))
        write_results(deps.store, tag_results(written), deps.fhir_base())
    except FhirError as err:
        if err.status < 500:
            current_app.logger.error("a service result was refused by the store: %s", err)
            raise FhirError(502, "exception",
                            f"the {service} service produced a result the store refused: {err.diagnostics}") from err
        raise
    return result.output


def _only_of(patient: str, params: list[dict[str, Any]]) -> None:
    """403 unless every report ``$dose-comparison`` gathered (a ``resource`` parameter after the
    ``predicted``/``delivered`` reference naming it), and each of its Observations, is the patient's."""
    named = {str((p.get("valueReference") or {}).get("reference")): i for i, p in enumerate(params)
             if p.get("name") in ("predicted", "delivered")}
    where = "Parameters.parameter"
    for param in params:
        resource = param.get("resource")
        if param.get("name") != "resource" or not isinstance(resource, dict):
            continue
        ref = f"{resource.get('resourceType')}/{resource.get('id')}"
        if ref in named:
            where = f"Parameters.parameter[{named[ref]}].valueReference"
        if not in_compartment(resource, patient):
            raise outside(f"{ref} is not of Patient/{patient}", where)


def create_operations_blueprint(deps: GatewayDeps) -> Blueprint:
    bp = Blueprint("operations", __name__)

    def run(service: str, operation: str, body: dict[str, Any], params: dict[str, str],
            patient: str | None) -> Response:
        return fhir_response(run_operation(deps, service, operation, body, params, patient))

    def given_bundle(bundle: dict[str, Any], patient: str | None, where: str) -> dict[str, Any]:
        if patient is not None:
            check_input_bundle(bundle, patient, where)
        return bundle

    @bp.post("/fhir/$evaluate-eligibility")
    def evaluate_eligibility() -> Response:
        patient = require_scopes(read=ELIGIBILITY_READS, write=RESULT_WRITES, compartment=True)
        body = _body(("Bundle", "Parameters"))
        bundle, values = bundle_input(body, "evaluate-eligibility")
        where = "Bundle" if body["resourceType"] == "Bundle" else "Parameters.parameter.where(name='input').resource"
        return run("eligibility", "evaluate-eligibility", given_bundle(bundle, patient, where),
                   {**request.args, **values}, patient)

    @bp.post("/fhir/Patient/<patient_id>/$evaluate-eligibility")
    def evaluate_patient_eligibility(patient_id: str) -> Response:
        patient = require_scopes(read=ELIGIBILITY_READS, write=RESULT_WRITES, compartment=True)
        if patient not in (None, patient_id):
            raise outside(f"Patient/{patient_id} is not the token's patient (Patient/{patient})")
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
        bundle = gather_patient_bundle(deps.store, patient_id, deps.fhir_base())
        return run("eligibility", "evaluate-eligibility", bundle, params, patient)

    @bp.post("/fhir/$tumor-response")
    def tumor_response() -> Response:
        patient = require_scopes(read=("Observation", "BodyStructure", "Procedure"), write=RESULT_WRITES,
                                 compartment=True)
        body = _body(("Bundle", "Parameters"))
        bundle, values = bundle_input(body, "tumor-response")
        where = "Bundle" if body["resourceType"] == "Bundle" else "Parameters.parameter.where(name='input').resource"
        with_doses = with_lesion_doses(deps.store, given_bundle(bundle, patient, where), deps.fhir_base())
        return run("response", "tumor-response", with_doses, {**request.args, **values}, patient)

    @bp.post("/fhir/$sirt-activity")
    def sirt_activity() -> Response:
        patient = require_scopes(write=("Observation", "Provenance"), compartment=True)
        body = _body(("Parameters",))
        named = [(i, p) for i, p in enumerate(parameters_of(body)) if p.get("name") == "patient"]
        if patient is not None:
            # the plan is written for, and the prior records gathered of, the token's patient only
            given = [(i, (p.get("valueReference") or {}).get("reference")) for i, p in named]
            if not given:
                raise outside(f"a plan for Patient/{patient} must name it in the 'patient' parameter",
                              "Parameters.parameter.where(name='patient')")
            for i, ref in given:
                if ref != f"Patient/{patient}":
                    raise outside(f"patient {ref!r} is not the token's patient (Patient/{patient})",
                                  f"Parameters.parameter[{i}].valueReference")
        if named:
            require_scopes(read=DOSE_READS, compartment=True)
            body = with_patient_dose_records(deps.store, body, deps.fhir_base())
        return run("dosimetry", "sirt-activity", body, dict(request.args), patient)

    @bp.post("/fhir/$dose-comparison")
    def dose_comparison() -> Response:
        patient = require_scopes(read=DOSE_READS, write=RESULT_WRITES, compartment=True)
        body = with_compared_reports(deps.store, _body(("Parameters",)))
        if patient is not None:  # the compared reports and their Observations, as read from the store
            _only_of(patient, parameters_of(body))
        return run("dosimetry", "dose-comparison", body, dict(request.args), patient)

    return bp
