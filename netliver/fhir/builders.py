"""Resource builders shared by every service.

Results get deterministic identities (:func:`deterministic_id`) so that writing the same result
twice updates one resource instead of creating a duplicate, even under concurrent retries.
Builders return plain JSON dicts in R4 wire format; :func:`netliver.fhir.models.validate_resource`
checks them in tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from netliver.fhir.codesystems import CANONICAL_BASE, UCUM

__all__ = [
    "OperationResult",
    "attachment",
    "canonical_json",
    "codeable",
    "coding",
    "content_digest",
    "deterministic_id",
    "fhir_instant",
    "imaging_study_id",
    "provenance",
    "quantity",
    "reference",
]

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, CANONICAL_BASE)


def attachment(content_type: str, data: bytes, title: str) -> dict[str, Any]:
    """A FHIR Attachment holding ``data`` (``hash`` is the base64 SHA-1, as R4 defines it)."""
    return {"contentType": content_type, "data": base64.b64encode(data).decode("ascii"), "size": len(data),
            "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"), "title": title}


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no spaces: equal content gives equal text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_digest(data: Any) -> str:
    """SHA-256 of the canonical JSON of ``data`` (hex)."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def deterministic_id(*parts: Any) -> str:
    """A FHIR id (UUID v5 text) determined only by ``parts``.

    The same service, operation, inputs and item always give the same id.
    """
    return str(uuid.uuid5(_NAMESPACE, canonical_json(list(parts))))


def imaging_study_id(study_instance_uid: str) -> str:
    """The id of the ``ImagingStudy`` recorded for a DICOM study (same everywhere it is needed)."""
    return deterministic_id("imaging-study", study_instance_uid)


def fhir_instant(moment: datetime | None = None) -> str:
    """An R4 ``instant`` in UTC with seconds (``2026-11-22T10:00:00Z``)."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def reference(resource_type: str, resource_id: str, display: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        ref["display"] = display
    return ref


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def codeable(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [coding(system, code, display)]}
    if text:
        out["text"] = text
    return out


def quantity(value: float | int | str, unit: str, ucum_code: str | None = None) -> dict[str, Any]:
    """A UCUM Quantity. ``value`` may be a Decimal rendered as str to keep its digits."""
    number: float | int
    if isinstance(value, str):
        number = float(value) if any(ch in value for ch in ".eE") else int(value)
    else:
        number = value
    return {"value": number, "unit": unit, "system": UCUM, "code": ucum_code or unit}


def provenance(
    *,
    targets: Sequence[Mapping[str, Any]],
    service: str,
    version: str,
    inputs: Iterable[Mapping[str, Any]] = (),
    activity: str = "operation",
    recorded: datetime | None = None,
    policy: Iterable[str] = (),
    extra_entities: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A ``Provenance`` for results written back: which service (and version) produced
    ``targets`` (references) from ``inputs`` (references).

    ``policy`` carries versioned rule sets or constants (e.g. a rule-set URI with version).
    Its id is determined by the targets, so re-writing the same results replaces it.
    """
    target_refs = [dict(t) for t in targets]
    if not target_refs:
        raise ValueError("a Provenance needs at least one target")
    entities = [{"role": "source", "what": dict(ref)} for ref in inputs]
    entities.extend(dict(e) for e in extra_entities)
    out: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": deterministic_id("provenance", service, sorted(r.get("reference", "") for r in target_refs)),
        "target": target_refs,
        "recorded": fhir_instant(recorded),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                 "code": "CREATE"}], "text": activity},
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                 "code": "assembler"}]},
            "who": {"display": f"netliver-{service} {version}",
                    "identifier": {"system": f"{CANONICAL_BASE}/service", "value": f"{service}/{version}"}},
        }],
    }
    policies = list(policy)
    if policies:
        out["policy"] = policies
    if entities:
        out["entity"] = entities
    return out


class OperationResult(dict[str, Any]):
    """What a service's operation returns to the gateway over HTTP.

    ``output``: the FHIR resource answered to the caller (a Bundle or Parameters);
    ``write``: resources (each with a deterministic ``id``) the gateway writes to the store in one
    transaction, Provenance included.
    """

    def __init__(self, output: Mapping[str, Any], write: Sequence[Mapping[str, Any]] = ()) -> None:
        for res in write:
            if not res.get("id") or not res.get("resourceType"):
                raise ValueError("every resource to write needs a resourceType and an id")
        super().__init__(output=dict(output), write=[dict(r) for r in write])
