"""CDS Hooks 2.0 "Feedback": what clinicians did with the cards, recorded as FHIR AuditEvents.

``POST {baseUrl}/cds-services/{id}/feedback`` carries ``{"feedback": [...]}``; each item names
the ``card`` (its ``uuid``), the ``outcome`` (``accepted`` or ``overridden``), the
``acceptedSuggestions`` (required when accepted), an optional ``overrideReason`` (``reason``
Coding and/or ``userComment``) and the ``outcomeTimestamp``. Each item becomes one R4
``AuditEvent`` (FHIR R4 §6.4) whose ``entity`` is the card and whose ``entity.detail`` holds
what the client reported; the agent is the authenticated CDS client (and its tenant).

The override reasons a clinician may choose are published on every card and in discovery
(:data:`OVERRIDE_REASONS`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from netliver.fhir.codesystems import CODESYSTEMS
from netliver.fhir.outcome import FhirError

__all__ = ["OVERRIDE_REASONS", "OVERRIDE_REASON_SYSTEM", "audit_events", "read_feedback"]

OVERRIDE_REASON_SYSTEM = CODESYSTEMS["cds-override-reason"].url
#: Why a clinician may set the eligibility summary aside (CDS Hooks 2.0 "overrideReasons":
#: each reason needs a display); the CodeSystem is served at its canonical URL.
OVERRIDE_REASONS = [{"system": OVERRIDE_REASON_SYSTEM, "code": c.code, "display": c.display}
                    for c in CODESYSTEMS["cds-override-reason"].concepts]
_OUTCOMES = ("accepted", "overridden")


def _text(item: dict[str, Any], name: str, where: str, *, required: bool = True) -> str | None:
    value = item.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise FhirError(400, "required", f"{where}.{name} must be a non-empty string", f"{where}.{name}")
    return value


def _timestamp(item: dict[str, Any], where: str) -> str:
    text = _text(item, "outcomeTimestamp", where)
    assert text is not None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FhirError(400, "value", f"{where}.outcomeTimestamp is not an ISO 8601 timestamp",
                        f"{where}.outcomeTimestamp") from None
    if moment.tzinfo is None:
        raise FhirError(400, "value", f"{where}.outcomeTimestamp needs a time zone (UTC)", f"{where}.outcomeTimestamp")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _item(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise FhirError(400, "structure", f"{where} must be an object", where)
    outcome = item.get("outcome")
    if outcome not in _OUTCOMES:
        raise FhirError(400, "value", f"{where}.outcome must be accepted or overridden", f"{where}.outcome")
    accepted: list[str] = []
    suggestions = item.get("acceptedSuggestions")
    if outcome == "accepted" or suggestions is not None:
        if not isinstance(suggestions, list) or not suggestions:
            raise FhirError(400, "required", f"{where}.acceptedSuggestions is required when a card is accepted",
                            f"{where}.acceptedSuggestions")
        for j, s in enumerate(suggestions):
            sid = s.get("id") if isinstance(s, dict) else None
            if not isinstance(sid, str) or not sid:
                raise FhirError(400, "required", "each accepted suggestion needs an id",
                                f"{where}.acceptedSuggestions[{j}].id")
            accepted.append(sid)
    reason = item.get("overrideReason")
    if reason is not None:
        if not isinstance(reason, dict):
            raise FhirError(400, "structure", f"{where}.overrideReason must be an object", f"{where}.overrideReason")
        coding = reason.get("reason")
        if coding is not None and (not isinstance(coding, dict) or not isinstance(coding.get("code"), str)):
            raise FhirError(400, "structure", f"{where}.overrideReason.reason must be a Coding with a code",
                            f"{where}.overrideReason.reason")
        _text(reason, "userComment", f"{where}.overrideReason", required=False)
    return {"card": _text(item, "card", where), "outcome": outcome, "accepted": accepted,
            "reason": reason, "timestamp": _timestamp(item, where)}


def read_feedback(body: Any) -> list[dict[str, Any]]:
    """The feedback items of a request body, checked; 400 naming the element otherwise."""
    if not isinstance(body, dict) or not isinstance(body.get("feedback"), list) or not body["feedback"]:
        raise FhirError(400, "structure", "a feedback request is {\"feedback\": [ ... ]} with at least one item",
                        "feedback")
    return [_item(item, f"feedback[{i}]") for i, item in enumerate(body["feedback"])]


def _detail(kind: str, value: str) -> dict[str, str]:
    return {"type": kind, "valueString": value}


def audit_events(items: list[dict[str, Any]], service_id: str, client: str | None, tenant: str | None,
                 now: datetime) -> list[dict[str, Any]]:
    """One AuditEvent per checked feedback item."""
    events = []
    for item in items:
        details = [_detail("outcome", item["outcome"]), _detail("outcomeTimestamp", item["timestamp"])]
        details += [_detail("acceptedSuggestion", sid) for sid in item["accepted"]]
        reason = item["reason"] or {}
        coding = reason.get("reason")
        if coding:
            details.append(_detail("overrideReason", f"{coding.get('system', '')}|{coding['code']}"
                                   + (f" ({coding['display']})" if isinstance(coding.get("display"), str) else "")))
        if isinstance(reason.get("userComment"), str):
            details.append(_detail("userComment", reason["userComment"]))
        if tenant:
            details.append(_detail("tenant", tenant))
        who = client or "unauthenticated caller (AUTH_MODE=off)"
        events.append({
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                     "display": "RESTful Operation"},
            "action": "E",
            "recorded": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "outcome": "0",
            "outcomeDesc": f"CDS Hooks feedback: card {item['outcome']}",
            "agent": [{"who": {"identifier": {"system": "urn:ietf:rfc:3986", "value": who}, "display": who},
                       "requestor": True}],
            "source": {"site": tenant or "netliver",
                       "observer": {"display": f"netliver CDS Hooks service {service_id}"},
                       "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                                 "code": "4", "display": "Application Server"}]},
            "entity": [{"what": {"identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{item['card']}"}},
                        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2",
                                 "display": "System Object"},
                        "name": f"CDS Hooks card {item['card']}",
                        "detail": details}],
        })
    return events
