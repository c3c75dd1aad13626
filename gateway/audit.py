"""Audit trail: one ``AuditEvent`` per patient for every read, search and write of patient data
and every operation (IHE Basic Audit Log Patterns, BALP: "one AuditEvent per Patient subject"),
searchable with ``GET /fhir/$audit-trail?patient=&entity=&agent=&date=`` (a searchset Bundle of
AuditEvents; ``/fhir/AuditEvent`` stays the store's own, e.g. the CDS feedback events).

An event names the client (the token's ``client_id``/``azp``/``sub``, ``internal`` for the
workers, ``auth-off`` with authentication off, ``anonymous`` on exempt paths), the patient(s), the resource or operation, the
RESTful interaction and the outcome (0 success, 4 client error, 8 server error). It never holds
the data: no query values (they are identifiers and names), no bodies, no diagnostics.

Cost: one INSERT statement per audited request (several rows when a search touches several
patients), in the gateway's SQL database, after the response is built and before it is sent.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, g, request

from gateway import auth
from netliver.fhir.outcome import FhirError
from netliver.web import fhir_response

__all__ = ["AuditLog", "audit_events_for", "init_audit"]

_log = logging.getLogger("netliver.gateway.audit")

_EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
               "display": "RESTful Operation"}
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
CLIENT_ID_SYSTEM = "urn:netliver:client-id"
#: Most patients one request's events name (a search page holds at most ``MAX_COUNT`` entries).
MAX_PATIENTS = 500
#: Paths that touch no patient data: not audited.
_QUIET_PREFIXES = ("/health", "/fhir/metadata", "/fhir/CodeSystem", "/fhir/OperationDefinition")
_QUIET_INTERNAL = ("/claim", "/progress")


@dataclass(frozen=True)
class Interaction:
    subtype: str  # restful-interaction code
    action: str  # C R U D E
    entity: str  # Type/id, Type, or $operation


def classify(method: str, path: str, location: str | None) -> Interaction | None:
    """The FHIR interaction of a request, or None when it is not audited."""
    if path.startswith(_QUIET_PREFIXES) or (path == "/cds-services" and method == "GET"):
        return None
    if path.startswith("/internal/"):
        if method == "GET" or path.endswith(_QUIET_INTERNAL):
            return None
        return Interaction("operation", "E", "$job-" + path.rsplit("/", 1)[-1])
    if path.startswith(("/cds-services/", "/hooks/")):
        return Interaction("operation", "E", path)
    if not path.startswith("/fhir"):
        return None
    parts = [p for p in path[len("/fhir"):].split("/") if p]
    if any(p.startswith("$") for p in parts):
        return Interaction("operation", "E", "/".join(parts))
    if not parts:
        return Interaction("batch" if method == "POST" else "capabilities", "E", "")
    rtype = parts[0]
    if len(parts) >= 2 and parts[1] == "_search":
        return Interaction("search-type", "E", rtype)
    if len(parts) == 1:
        if method == "POST":
            created = _entity_from_location(location) or rtype
            return Interaction("create", "C", created)
        return Interaction("search-type", "E", rtype)
    entity = f"{rtype}/{parts[1]}"
    if method == "PUT":
        return Interaction("update", "U", entity)
    if method == "DELETE":
        return Interaction("delete", "D", entity)
    if len(parts) >= 3 and parts[2] == "_history":
        return Interaction("vread" if len(parts) == 4 else "history-instance", "R", entity)
    return Interaction("read", "R", entity)


def _entity_from_location(location: str | None) -> str | None:
    if not location or "/fhir/" not in location:
        return None
    parts = location.split("/fhir/", 1)[1].split("/")
    return f"{parts[0]}/{parts[1]}" if len(parts) >= 2 else None


def _patient_refs(resource: Any) -> Iterator[str]:
    """``Patient/<id>`` references a resource (or a Bundle/Parameters of them) is about."""
    stack = [resource]
    while stack:
        res = stack.pop()
        if not isinstance(res, Mapping):
            continue
        rtype = res.get("resourceType")
        if rtype == "Patient" and isinstance(res.get("id"), str):
            yield f"Patient/{res['id']}"
        for key in ("subject", "patient", "for"):
            ref = res.get(key)
            if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str):
                text = ref["reference"]
                if "Patient/" in text:
                    yield "Patient/" + text.split("Patient/", 1)[1].split("/")[0]
        if rtype == "Bundle":
            stack.extend(e.get("resource") for e in res.get("entry") or [] if isinstance(e, Mapping))
        elif rtype == "Parameters":
            stack.extend(p.get("resource") for p in res.get("parameter") or [] if isinstance(p, Mapping))


def _request_patients(path: str) -> Iterator[str]:
    parts = path.split("/")
    if len(parts) >= 4 and parts[1] == "fhir" and parts[2] == "Patient" and parts[3] and not parts[3].startswith("$"):
        yield f"Patient/{parts[3]}"
    for name in ("patient", "subject"):
        for value in request.args.getlist(name):
            if value.startswith("Patient/"):
                yield value.split("/")[0] + "/" + value.split("/")[1]
            elif name == "patient" and value and "/" not in value:
                yield f"Patient/{value}"
    body = g.get("json_body")
    if isinstance(body, Mapping):
        context = body.get("context")
        if isinstance(context, Mapping) and isinstance(context.get("patientId"), str):
            yield f"Patient/{context['patientId']}"
        yield from _patient_refs(body)


def audit_events_for(interaction: Interaction, patients: list[str], status: int, agent: str,
                     address: str | None, now: datetime) -> list[dict[str, Any]]:
    """The AuditEvents of one request: one per patient (one without a patient when none)."""
    outcome = "0" if status < 400 else "4" if status < 500 else "8"
    base: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _EVENT_TYPE,
        "subtype": [{"system": _INTERACTION, "code": interaction.subtype}],
        "action": interaction.action,
        "recorded": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "outcome": outcome,
        "agent": [{"who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": agent}}, "requestor": True,
                   **({"network": {"address": address, "type": "2"}} if address else {})}],
        "source": {"observer": {"display": "netliver gateway"},
                   "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
    }
    entity: list[dict[str, Any]] = []
    if interaction.entity:
        what = ({"reference": interaction.entity} if "/" in interaction.entity and not interaction.entity.startswith("$")
                else {"display": interaction.entity})
        entity.append({"what": what, "type": {"system": _ENTITY_TYPE, "code": "2"},
                       "role": {"system": _OBJECT_ROLE, "code": "4"}})
    events = []
    targets: list[str | None] = list(patients) or [None]
    for patient in targets:
        event = {**base, "id": str(uuid.uuid4()), "entity": list(entity)}
        if patient is not None:
            event["entity"].insert(0, {"what": {"reference": patient}, "type": {"system": _ENTITY_TYPE, "code": "1"},
                                       "role": {"system": _OBJECT_ROLE, "code": "1"}})
        if not event["entity"]:
            del event["entity"]
        events.append(event)
    return events


class AuditLog:
    """The ``netliver_audit`` table: one row per AuditEvent, indexed by patient, entity, agent, time."""

    def __init__(self, engine: sa.Engine, metadata: sa.MetaData) -> None:
        self.engine = engine
        self.table = sa.Table(
            "netliver_audit", metadata,
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("recorded_us", sa.BigInteger, nullable=False),
            sa.Column("patient", sa.String(80), nullable=False),
            sa.Column("entity", sa.String(200), nullable=False),
            sa.Column("agent", sa.String(256), nullable=False),
            sa.Column("content", sa.Text, nullable=False),
            sa.Index("ix_netliver_audit_patient", "patient", "recorded_us"),
            sa.Index("ix_netliver_audit_agent", "agent", "recorded_us"),
            sa.Index("ix_netliver_audit_entity", "entity", "recorded_us"),
            extend_existing=True)

    def write(self, events: list[dict[str, Any]], recorded_us: int) -> None:
        rows = []
        for event in events:
            refs = [e["what"].get("reference", "") for e in event.get("entity", [])]
            patient = next((r for r in refs if r.startswith("Patient/")), "")
            entity = next((r for r in refs if r != patient), "") or patient
            rows.append({"id": event["id"], "recorded_us": recorded_us, "patient": patient[:80],
                         "entity": entity[:200], "agent": event["agent"][0]["who"]["identifier"]["value"][:256],
                         "content": json.dumps(event, separators=(",", ":"))})
        with self.engine.begin() as conn:
            conn.execute(self.table.insert(), rows)

    def search(self, patient: str | None, entity: str | None, agent: str | None,
               since_us: int | None, until_us: int | None, count: int, offset: int) -> list[dict[str, Any]]:
        t = self.table
        query = sa.select(t.c.content).order_by(t.c.recorded_us.desc(), t.c.id).limit(count).offset(offset)
        for column, value in ((t.c.patient, patient), (t.c.entity, entity), (t.c.agent, agent)):
            if value is not None:
                query = query.where(column == value)
        if since_us is not None:
            query = query.where(t.c.recorded_us >= since_us)
        if until_us is not None:
            query = query.where(t.c.recorded_us < until_us)
        with self.engine.connect() as conn:
            return [json.loads(row[0]) for row in conn.execute(query)]


def _agent() -> str:
    principal = auth.current_principal()
    if principal is None:
        return "anonymous"
    return principal.client_id or principal.subject or principal.kind


def _record(log: AuditLog, resp: Response) -> None:
    interaction = classify(request.method, request.path, resp.headers.get("Location"))
    if interaction is None:
        return
    patients = list(dict.fromkeys(_request_patients(request.path)))
    if resp.status_code < 400:
        patients = list(dict.fromkeys([*patients, *_patient_refs(g.get("response_resource"))]))
    now = datetime.now(UTC)
    events = audit_events_for(interaction, patients[:MAX_PATIENTS], resp.status_code, _agent(),
                              request.remote_addr, now)
    log.write(events, int(now.timestamp() * 1_000_000))


def init_audit(app: Flask, engine: sa.Engine, metadata: sa.MetaData) -> AuditLog:
    """Record an AuditEvent after every audited request; the table is added to ``metadata``."""
    log = AuditLog(engine, metadata)

    @app.after_request
    def _audit(resp: Response) -> Response:
        try:
            _record(log, resp)
        except Exception as exc:  # the answer stands; the failure is logged for the operators
            _log.error("audit event not recorded", extra={"path": request.path, "error": type(exc).__name__})
        return resp

    app.register_blueprint(_search_blueprint(lambda: log))
    return log


def _date_bounds(values: list[str]) -> tuple[int | None, int | None]:
    since = until = None
    for value in values:
        prefix, text = (value[:2], value[2:]) if value[:2] in {"ge", "gt", "le", "lt", "eq"} else ("eq", value)
        try:
            moment = datetime.fromisoformat(text if "T" in text else text + "T00:00:00+00:00")
        except ValueError:
            raise FhirError(400, "invalid", "date must be an ISO 8601 date or instant, optionally "
                            "prefixed by ge, gt, le, lt", "date") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        us = int(moment.timestamp() * 1_000_000)
        day = 86_400_000_000 if "T" not in text else 1
        if prefix in {"ge", "gt", "eq"}:
            since = us + (day if prefix == "gt" else 0)
        if prefix in {"le", "lt", "eq"}:
            until = us + (0 if prefix == "lt" else day)
    return since, until


def _search_blueprint(get_log: Callable[[], AuditLog]) -> Blueprint:
    bp = Blueprint("audit", __name__)
    allowed = {"patient", "entity", "agent", "date", "_count", "_offset"}

    @bp.get("/fhir/$audit-trail")
    def search() -> Response:
        auth.require_scopes(read=("AuditEvent",))
        unknown = sorted(set(request.args) - allowed)
        if unknown:
            raise FhirError(400, "not-supported", f"unknown $audit-trail parameter(s): {', '.join(unknown)}",
                            unknown)
        patient = request.args.get("patient")
        if patient is not None and "/" not in patient:
            patient = f"Patient/{patient}"
        try:
            count = min(max(int(request.args.get("_count", "50")), 0), 500)
            offset = int(request.args.get("_offset", "0"))
        except ValueError:
            raise FhirError(400, "invalid", "_count and _offset must be integers", "_count") from None
        if not 0 <= offset <= 100_000:
            raise FhirError(400, "value", "_offset must be between 0 and 100000", "_offset")
        since, until = _date_bounds(request.args.getlist("date"))
        started = time.perf_counter()
        events = get_log().search(patient, request.args.get("entity"), request.args.get("agent"),
                                  since, until, count, offset)
        _log.debug("audit search", extra={"ms": round((time.perf_counter() - started) * 1000, 1)})
        return fhir_response({"resourceType": "Bundle", "type": "searchset", "total": len(events),
                              "entry": [{"resource": e, "search": {"mode": "match"}} for e in events]})

    return bp
