"""CDS Hooks 2.0: discovery (``GET /cds-services``) and the ``patient-view`` service
``liver-directed-therapy`` whose cards summarise eligibility.

The EHR's prefetch (patient, Observations, Conditions, Procedures) is used when given; whatever
it leaves out, and the other input types (medications, allergies, imaging, lesions), are read from
the gateway's FHIR store. The eligibility service turns the Bundle into
cards (it owns the clinical wording).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from gateway.auth import require_scopes
from gateway.patient_record import ELIGIBILITY_READS, gather_patient_bundle
from netliver.fhir.outcome import FhirError

if TYPE_CHECKING:
    from gateway.deps import GatewayDeps

__all__ = ["SERVICE_ID", "create_cds_blueprint", "discovery"]

SERVICE_ID = "liver-directed-therapy"

PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "observations": "Observation?subject={{context.patientId}}&_count=500",
    "conditions": "Condition?subject={{context.patientId}}&_count=500",
    "procedures": "Procedure?subject={{context.patientId}}&_count=500",
}


#: Prefetch key → the resource type it holds.
_PREFETCH_TYPES = {"patient": "Patient", "observations": "Observation", "conditions": "Condition",
                   "procedures": "Procedure"}


def discovery() -> dict[str, Any]:
    return {"services": [{
        "hook": "patient-view",
        "id": SERVICE_ID,
        "title": "Liver-directed therapy eligibility",
        "description": "Summarises, therapy by therapy, whether a patient with neuroendocrine or thyroid "
                       "liver metastases is eligible for resection, transplant, ablation, TAE/TACE, SIRT or "
                       "PRRT, and which data are missing.",
        "prefetch": PREFETCH,
        "usageRequirements": "Prefetch of the patient's Observations and Conditions recommended.",
    }]}


def _entries(resource: Any, key: str) -> list[dict[str, Any]]:
    """The resources of one prefetch key (a resource or a Bundle); 400 naming it when malformed."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise FhirError(400, "structure", f"prefetch.{key} is not a FHIR resource", f"prefetch.{key}")
    if resource["resourceType"] != "Bundle":
        return [resource]
    entries = resource.get("entry", [])
    if not isinstance(entries, list):
        raise FhirError(400, "structure", f"prefetch.{key}.entry must be a list", f"prefetch.{key}")
    return [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def create_cds_blueprint(deps: GatewayDeps) -> Blueprint:
    bp = Blueprint("cds", __name__)

    @bp.get("/cds-services")
    def cds_discovery() -> Response:
        return jsonify(discovery())

    @bp.post(f"/cds-services/{SERVICE_ID}")
    def patient_view() -> Response:
        # Whatever the EHR did not prefetch is read from the store: every eligibility input type.
        require_scopes(read=ELIGIBILITY_READS)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise FhirError(400, "invalid", "a CDS Hooks request (JSON object) was expected")
        if body.get("hook") != "patient-view":
            raise FhirError(422, "not-supported", f"this service answers patient-view, not {body.get('hook')!r}", "hook")
        context = body.get("context") or {}
        patient_id = context.get("patientId") if isinstance(context, dict) else None
        if not isinstance(patient_id, str) or not patient_id:
            raise FhirError(422, "required", "context.patientId is required", "context.patientId")
        patient_id = patient_id.removeprefix("Patient/")
        prefetch = body.get("prefetch") or {}
        # CDS Hooks 2.0 "Prefetch": a key the client left out (or sent as null) is data it did
        # not provide, so the service reads it itself; a prefetched key, even empty, is used as is.
        prefetched = {rtype: _entries(prefetch.get(key), key) for key, rtype in _PREFETCH_TYPES.items()
                      if isinstance(prefetch, dict) and prefetch.get(key) is not None}
        bundle = gather_patient_bundle(deps.store, patient_id, deps.fhir_base(), prefetched=prefetched)
        answer = deps.services.call_json("eligibility", "cds-cards", bundle, {})
        cards = answer.get("cards", [])
        return jsonify({"cards": cards})

    return bp
