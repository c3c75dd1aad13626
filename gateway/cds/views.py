"""CDS Hooks 2.0 endpoints: discovery (``GET /cds-services``, public), the ``patient-view``
service ``liver-directed-therapy`` and its feedback endpoint.

The service assembles the patient's record from, key by key: the call's ``prefetch``; for what
that leaves out (absent, or an ``OperationOutcome``), the EHR's ``fhirServer`` with the
``fhirAuthorization`` token when the call names one, otherwise netliver's own store when it
holds the patient. When any of it cannot be had the answer is 412 naming the keys, never a card
computed without it. The eligibility service turns the record into cards (it owns the clinical
wording); the gateway adds the link to the tumour-board page and the override reasons.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask import Blueprint, Response, g

from gateway.auth import current_principal
from gateway.cds.client_auth import current_cds_client
from gateway.cds.ehr import EhrFhirServer, fhir_server_of
from gateway.cds.feedback import OVERRIDE_REASONS, audit_events, read_feedback
from gateway.cds.prefetch import (
    PREFETCH,
    PREFETCH_KEYS,
    PrefetchRead,
    check_patient_id,
    read_prefetch,
)
from gateway.patient_record import gather_patient_bundle
from gateway.store.base import FhirStore
from netliver import sessions
from netliver.fhir.outcome import FhirError, Issue
from netliver.settings import Settings
from netliver.web import fhir_response, read_json_body

if TYPE_CHECKING:
    from gateway.deps import GatewayDeps

__all__ = ["HOOK", "SERVICE_ID", "create_cds_blueprint", "discovery"]

SERVICE_ID = "liver-directed-therapy"
HOOK = "patient-view"
#: Name of the discovery extension listing the override reasons (CDS Hooks 2.0 "Extensions").
OVERRIDE_REASONS_EXTENSION = "org.netliver.overrideReasons"


def discovery() -> dict[str, Any]:
    return {"services": [{
        "hook": HOOK,
        "id": SERVICE_ID,
        "title": "Liver-directed therapy eligibility",
        "description": "Summarises, therapy by therapy, whether a patient with neuroendocrine or thyroid "
                       "liver metastases is eligible for resection, transplant, ablation, TAE/TACE, SIRT or "
                       "PRRT, with the deciding reasons, and which data are missing.",
        "prefetch": dict(PREFETCH),
        "usageRequirements": "Prefetch every key, or send fhirServer with a fhirAuthorization token that can "
                             "read these resource types of the patient; the service answers 412 when data it "
                             "needs can be had neither way.",
        "extension": {OVERRIDE_REASONS_EXTENSION: OVERRIDE_REASONS},
    }]}


def _hook_request() -> tuple[dict[str, Any], str]:
    """The call's body and patient id; 400 naming the element a required field lacks."""
    body = read_json_body()
    if not isinstance(body, dict):
        raise FhirError(400, "structure", "a CDS Hooks request (JSON object) was expected")
    hook = body.get("hook")
    if not isinstance(hook, str) or not hook:
        raise FhirError(400, "required", "hook is required", "hook")
    if hook != HOOK:
        raise FhirError(422, "not-supported", f"this service answers {HOOK}, not {hook[:60]!r}", "hook")
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not instance:
        raise FhirError(400, "required", "hookInstance is required", "hookInstance")
    context = body.get("context")
    if not isinstance(context, dict):
        raise FhirError(400, "required", "context is required (an object)", "context")
    if not isinstance(context.get("userId"), str) or not context["userId"]:
        raise FhirError(400, "required", "context.userId is required", "context.userId")
    return body, check_patient_id(context.get("patientId"))


def _unavailable(failed: dict[str, str], source: str) -> FhirError:
    issues = [Issue("not-found", f"{key}: {reason}", (f"prefetch.{key}",)) for key, reason in failed.items()]
    issues.append(Issue("processing", f"no card is given without this data ({source})", ()))
    return FhirError.from_issues(412, issues)


def _record_from_ehr(read: PrefetchRead, patient_id: str, server: str, token: str | None,
                     settings: Settings) -> dict[str, list[dict[str, Any]]]:
    ehr = EhrFhirServer(server, token, settings.cds_fetch_timeout_s, sessions.session())
    try:
        got, failed = ehr.fetch_all([k for k in PREFETCH_KEYS if k.key in read.missing], patient_id)
    finally:
        ehr.session.close()
    if failed:
        raise _unavailable(failed, f"read from fhirServer {server}")
    return {**read.given, **got}


def _record(read: PrefetchRead, patient_id: str, body: dict[str, Any], store: FhirStore, base_url: str,
            settings: Settings) -> dict[str, Any]:
    """The patient's record as a searchset Bundle; 412 when part of it cannot be had."""
    server, token = fhir_server_of(body)
    client = current_cds_client()
    if server is not None and client is not None and not client.may_use(server):
        raise FhirError(403, "forbidden", f"fhirServer {server[:120]!r} is not one of the FHIR servers registered "
                        f"for CDS client {client.iss!r} (CDS_CLIENTS fhir_servers)", "fhirServer")
    if not read.missing:
        return gather_patient_bundle(store, patient_id, base_url, prefetched=read.given)
    if server is not None:
        record = _record_from_ehr(read, patient_id, server, token, settings)
        return gather_patient_bundle(store, patient_id, base_url, prefetched=record)
    # No fhirServer: netliver's own store is the record, when it knows this patient.
    try:
        store.read("Patient", patient_id)
    except FhirError as err:
        if err.status not in (404, 410):
            raise
        raise _unavailable(dict(read.missing), f"no fhirServer was given and netliver's store has no "
                           f"Patient/{patient_id}") from None
    return gather_patient_bundle(store, patient_id, base_url, prefetched=read.given)


def _with_links(cards: list[Any], patient_id: str, root: str) -> list[Any]:
    page = {"label": "Open the tumour-board page of this patient",
            "url": f"{root}/app/patient/{quote(patient_id, safe='')}", "type": "absolute"}
    out = []
    for card in cards:
        if isinstance(card, dict):
            card = {**card, "links": [*card.get("links", []), page], "overrideReasons": OVERRIDE_REASONS}
        out.append(card)
    return out


def create_cds_blueprint(deps: GatewayDeps) -> Blueprint:
    bp = Blueprint("cds", __name__)

    @bp.get("/cds-services")
    def cds_discovery() -> Response:
        return fhir_response(discovery())

    @bp.post(f"/cds-services/{SERVICE_ID}")
    def patient_view() -> Response:
        body, patient_id = _hook_request()
        read = read_prefetch(body.get("prefetch"), patient_id)
        bundle = _record(read, patient_id, body, deps.store, deps.fhir_base(), deps.settings)
        answer = deps.services.call_json("eligibility", "cds-cards", bundle, {}, g.get("request_id", ""))
        cards = answer.get("cards")
        if not isinstance(cards, list):
            raise FhirError(502, "exception", "the eligibility service answered no cards")
        root = deps.fhir_base().removesuffix("/fhir")
        return fhir_response({"cards": _with_links(cards, patient_id, root)})

    @bp.post("/cds-services/<service_id>/feedback")
    def feedback(service_id: str) -> Response:
        if service_id != SERVICE_ID:
            raise FhirError(404, "not-found", f"no CDS service {service_id[:60]!r}", "id")
        items = read_feedback(read_json_body())
        principal = current_principal()
        client = principal.client_id if principal is not None else None
        tenant = principal.tenant if principal is not None else None
        events = audit_events(items, SERVICE_ID, client, tenant, datetime.now(UTC))
        batch = {"resourceType": "Bundle", "type": "transaction",
                 "entry": [{"resource": e, "request": {"method": "POST", "url": "AuditEvent"}} for e in events]}
        result = deps.store.transaction(batch, deps.fhir_base())
        locations = [e.get("response", {}).get("location") for e in result.get("entry", [])]
        return fhir_response({"recorded": [loc for loc in locations if loc]})

    return bp
