"""``GET /fhir/Binary/<id>``: a Binary's content as its native bytes or as the FHIR resource
(FHIR R4 Binary §6.x REST: ``Accept`` of a FHIR format gives the resource with base64 ``data``,
any other the raw content with its own ``Content-Type``), and a report's presented forms drawn
on their first read.

A DiagnosticReport the gateway writes names its figures (PNG) and its PDF by ``url``
(``Binary/<report>-fig-<n>``, ``Binary/<report>-pdf``) and records what they are drawn from in
``Binary/<report>-ctx`` (:func:`netliver.report.presented.with_form_links`). The first read of
a form draws it from that record and stores it, tagged with the digest of the record it was
drawn from; later reads are plain reads, and a form whose report was written again since (new
record) is drawn again. Drawing is deterministic, so the bytes are the same every time.

Reading a Binary needs the ``Binary`` read scope and the read scope of the type its
``securityContext`` names (the report, for the forms and their record; for the record also the
types it holds). A token confined to one patient (``patient/`` scopes) reads a Binary whose
``securityContext`` is in that patient's compartment (and, for a record, all it holds), and
nothing is drawn for it otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, request

from gateway import auth
from gateway.compartment import in_compartment, outside
from gateway.fhir_interactions import JSON_FORMATS
from gateway.store.base import FhirStore, is_resource_type
from netliver.fhir.codesystems import CANONICAL_BASE
from netliver.fhir.outcome import FhirError
from netliver.web import fhir_response

__all__ = ["DRAWN_FROM", "create_binary_blueprint", "is_binary_read"]

#: Tag of a drawn form: its ``code`` is the digest of the record it was drawn from.
DRAWN_FROM = f"{CANONICAL_BASE}/CodeSystem/drawn-from"


def is_binary_read(method: str, path: str) -> bool:
    """True for ``GET /fhir/Binary/<id>``, which negotiates its own formats."""
    parts = path.split("/")
    return method in ("GET", "HEAD") and len(parts) == 4 and parts[:3] == ["", "fhir", "Binary"] and bool(parts[3])


def _read(store: FhirStore, rtype: str, rid: str) -> dict[str, Any] | None:
    """The stored resource, or None when unknown (or, other than a Binary, deleted: a deleted
    Binary stays a 410 for its reader)."""
    try:
        return store.read(rtype, rid)
    except FhirError as err:
        if err.status == 404 or (err.status == 410 and rtype != "Binary"):
            return None
        raise


def _digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(str(record.get("data", "")).encode("ascii")).hexdigest()


def _drawn_from(resource: dict[str, Any]) -> str | None:
    return next((str(t.get("code")) for t in (resource.get("meta") or {}).get("tag", [])
                 if t.get("system") == DRAWN_FROM), None)


def _context_of(binary: dict[str, Any]) -> tuple[str, str]:
    """(type, id) of the resource a Binary's ``securityContext`` names (empty strings: none)."""
    rtype, _, rid = str((binary.get("securityContext") or {}).get("reference", "")).partition("/")
    return rtype, rid


def _allowed(store: FhirStore, binary: dict[str, Any], patient: str | None, *,
             with_held: bool = True) -> dict[str, Any] | None:
    """The resource ``binary``'s ``securityContext`` names, after checking the caller may read
    ``binary``: the read scopes of that type (and, ``with_held``, of the types a record holds),
    and for a caller confined to ``patient`` that resource (and all a record holds) in that
    patient's compartment."""
    rtype, rid = _context_of(binary)
    record = with_held and bool(rtype) and binary.get("contentType") == "application/fhir+json"
    held = _types_in(binary) if record else []
    auth.require_scopes(read=["Binary", *([rtype] if rtype else []), *held], compartment=True)
    target = _read(store, rtype, rid) if rtype and rid and is_resource_type(rtype) else None
    if patient is not None:
        if target is None or not in_compartment(target, patient):
            raise outside(f"Binary/{binary.get('id')} is not of Patient/{patient}")
        if held and not all(in_compartment(r, patient) for r in _resources_in(binary)):
            raise outside(f"Binary/{binary.get('id')} holds resources of others than Patient/{patient}")
    return target


def _form(store: FhirStore, binary_id: str, record_id: str, patient: str | None) -> dict[str, Any] | None:
    """The form ``binary_id`` (drawn and stored now unless stored from its current record)."""
    stored = _read(store, "Binary", binary_id)
    record = _read(store, "Binary", record_id)
    if record is None:
        return stored
    key = _digest(record)
    if stored is not None and _drawn_from(stored) == key:
        return stored
    # matplotlib and reportlab: loaded at start in the background (gateway.webapp.warm_up_plotting).
    from netliver.report.presented import FormContextError, draw_form

    # nothing is drawn for a caller who may not read the form (the record's scopes and patient)
    _allowed(store, {**record, "id": binary_id}, patient, with_held=False)
    try:
        content_type, data = draw_form(record, binary_id)
    except FormContextError:
        return stored
    binary = {"resourceType": "Binary", "id": binary_id, "meta": {"tag": [{"system": DRAWN_FROM, "code": key}]},
              "contentType": content_type, "data": base64.b64encode(data).decode("ascii")}
    if record.get("securityContext"):
        binary["securityContext"] = record["securityContext"]
    drawn, _ = store.put(binary)
    return drawn


def _resources_in(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources a Binary holding a FHIR Bundle holds (none when it holds no Bundle)."""
    try:
        bundle = json.loads(base64.b64decode(str(record.get("data", ""))))
        return [e["resource"] for e in bundle["entry"] if isinstance(e["resource"], dict)]
    except (ValueError, KeyError, TypeError):
        return []


def _types_in(record: dict[str, Any]) -> list[str]:
    return sorted({str(r.get("resourceType")) for r in _resources_in(record)})


def _wants_resource(content_type: str) -> bool:
    """True when the caller asks for the Binary resource (FHIR JSON), False for the raw content;
    406 when it accepts neither."""
    fmt = request.args.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip().lower() in JSON_FORMATS:
            return True
        raise FhirError(406, "not-supported", f"_format={fmt!r} is not served: only FHIR JSON (_format=json) "
                        "or, without _format, the content itself", "_format")
    types = [p.split(";")[0].strip().lower() for p in request.headers.get("Accept", "").split(",") if p.strip()]
    if any(t in JSON_FORMATS for t in types):
        return True
    major = content_type.partition("/")[0]
    if not types or any(t in ("*/*", content_type.lower(), f"{major}/*") for t in types):
        return False
    raise FhirError(406, "not-supported", f"Accept: {request.headers.get('Accept')} is neither FHIR JSON nor "
                    f"this Binary's {content_type}", "Accept")


def create_binary_blueprint(get_store: Callable[[], FhirStore]) -> Blueprint:
    bp = Blueprint("binary", __name__)

    @bp.get("/fhir/Binary/<binary_id>")
    def read_binary(binary_id: str) -> Response:
        from netliver.report.presented import context_id

        patient = auth.require_scopes(read=["Binary"], compartment=True)
        store = get_store()
        record_id = context_id(binary_id)
        binary = _form(store, binary_id, record_id, patient) if record_id else _read(store, "Binary", binary_id)
        if binary is None:
            raise FhirError(404, "not-found", f"Binary/{binary_id} is not known")
        target = _allowed(store, binary, patient)
        if target is not None:
            # The audit trail names the patient whose report this is (a Binary has no subject).
            g.response_resource = {"resourceType": "Bundle", "entry": [{"resource": binary}, {"resource": target}]}
        content_type = str(binary.get("contentType") or "application/octet-stream")
        meta = binary.get("meta") or {}
        headers = {"ETag": f'W/"{meta["versionId"]}"'} if meta.get("versionId") else {}
        if _wants_resource(content_type):
            return fhir_response(binary, 200, headers)
        return Response(base64.b64decode(str(binary.get("data", ""))), 200, headers=headers, mimetype=content_type)

    return bp
