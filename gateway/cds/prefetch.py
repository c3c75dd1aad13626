"""Prefetch templates of the liver-directed-therapy service and how a call's prefetch is read.

CDS Hooks 2.0, "Providing FHIR Resources to a CDS Service" and "Prefetch Template": the service
publishes one template per key; the client sends, per key, the result of that query (a resource,
or a ``searchset`` Bundle for a search), ``null`` when it has no data, or leaves the key out when
it chose not to (or could not) satisfy it; a client that failed may also send an
``OperationOutcome``. The service fetches what it was not given, and answers 412 when the data
the answer depends on cannot be had.

The searches use ``patient={{context.patientId}}``: the ``patient`` search parameter of every
type read here targets Patient only, so a bare id means the same on every FHIR R4 server (a bare
id in ``subject=``, which may point at a Group or a Device, does not). No date filters: prefetch
tokens cannot express "N days before today", and the evaluation itself reads old values to say
they are too old. The keys cover every type the eligibility evaluation reads.

Everything here is pure: :func:`read_prefetch` turns the request's ``prefetch`` into the data
given per key and the keys still to fetch; malformed input is a 400 naming ``prefetch.<key>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from netliver.fhir.outcome import FhirError

__all__ = [
    "PATIENT_TOKEN",
    "PREFETCH",
    "PREFETCH_KEYS",
    "PrefetchKey",
    "PrefetchRead",
    "check_patient_id",
    "foreign_patient",
    "read_prefetch",
    "search_entries",
]

PATIENT_TOKEN = "{{context.patientId}}"
#: FHIR R4 §2.1.0.4 ``id``: 1-64 of A-Z a-z 0-9 - .
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class PrefetchKey:
    """One prefetch key: the resource type it holds and its query template."""

    key: str
    resource_type: str
    template: str

    @property
    def is_read(self) -> bool:
        return "?" not in self.template

    def query(self, patient_id: str) -> str:
        """The template with the patient's id (URL-escaped) in place of the token."""
        return self.template.replace(PATIENT_TOKEN, quote(patient_id, safe=""))


#: Every resource type the eligibility evaluation reads (gateway.operations.ELIGIBILITY_READS).
PREFETCH_KEYS = (
    PrefetchKey("patient", "Patient", f"Patient/{PATIENT_TOKEN}"),
    PrefetchKey("observations", "Observation", f"Observation?patient={PATIENT_TOKEN}&_count=500"),
    PrefetchKey("conditions", "Condition", f"Condition?patient={PATIENT_TOKEN}&_count=200"),
    PrefetchKey("procedures", "Procedure", f"Procedure?patient={PATIENT_TOKEN}&_count=200"),
    PrefetchKey("medications", "MedicationStatement", f"MedicationStatement?patient={PATIENT_TOKEN}&_count=200"),
    PrefetchKey("allergies", "AllergyIntolerance", f"AllergyIntolerance?patient={PATIENT_TOKEN}&_count=100"),
    PrefetchKey("imaging", "ImagingStudy", f"ImagingStudy?patient={PATIENT_TOKEN}&_count=100"),
    PrefetchKey("lesions", "BodyStructure", f"BodyStructure?patient={PATIENT_TOKEN}&_count=200"),
)
PREFETCH = {k.key: k.template for k in PREFETCH_KEYS}


def check_patient_id(value: Any) -> str:
    """``context.patientId`` as a FHIR id (a ``Patient/`` prefix tolerated); 400 otherwise."""
    if not isinstance(value, str) or not value:
        raise FhirError(400, "required", "context.patientId is required", "context.patientId")
    patient_id = value.removeprefix("Patient/")
    if not _FHIR_ID.match(patient_id):
        raise FhirError(400, "value", "context.patientId is not a FHIR id (1-64 of A-Z a-z 0-9 - .)",
                        "context.patientId")
    return patient_id


def _patient_of(reference: Any) -> str | None:
    """The Patient id a ``Reference`` names (relative or absolute URL), else None."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    parts = reference["reference"].split("?")[0].split("#")[0].split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "Patient":
            return parts[i + 1] or None
    return None


def foreign_patient(resource: Mapping[str, Any], patient_id: str) -> str | None:
    """The other patient ``resource`` belongs to, when it names one that is not ``patient_id``."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and rid != patient_id else None
    for element in ("subject", "patient"):
        other = _patient_of(resource.get(element))
        if other is not None and other != patient_id:
            return other
    return None


def search_entries(bundle: Mapping[str, Any], resource_type: str, where: str) -> tuple[list[dict[str, Any]], str | None]:
    """The ``resource_type`` resources of a search Bundle, and why it is incomplete (or None).

    Incomplete: a ``next`` link (CDS Hooks forbids paged prefetch, so the rest is missing) or an
    OperationOutcome entry with an error (the server says the search failed in part). Entries of
    other types (``_include``, warnings) are ignored."""
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise FhirError(400, "structure", f"{where}.entry must be a list", where)
    out: list[dict[str, Any]] = []
    problem: str | None = None
    for entry in entries:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict):
            continue
        if res.get("resourceType") == resource_type:
            out.append(res)
        elif res.get("resourceType") == "OperationOutcome" and _has_error(res):
            problem = f"{where} holds an OperationOutcome: {_outcome_text(res)}"
    links = bundle.get("link", [])
    if isinstance(links, list) and any(isinstance(li, dict) and li.get("relation") == "next" for li in links):
        problem = problem or f"{where} is one page of several (it has a 'next' link)"
    return out, problem


def _has_error(outcome: Mapping[str, Any]) -> bool:
    issues = outcome.get("issue", [])
    return isinstance(issues, list) and any(
        isinstance(i, dict) and i.get("severity") in ("error", "fatal") for i in issues)


def _outcome_text(outcome: Mapping[str, Any]) -> str:
    issues = outcome.get("issue", [])
    texts = [str(i.get("diagnostics") or i.get("code") or "?") for i in issues if isinstance(i, dict)] \
        if isinstance(issues, list) else []
    return "; ".join(texts)[:300] or "no diagnostics"


@dataclass
class PrefetchRead:
    """What a call's prefetch gives: resources per resource type, and the keys still missing
    with the reason (absent, an OperationOutcome, an incomplete Bundle)."""

    given: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    #: Keys the client answered with null (no data).
    empty: list[str] = field(default_factory=list)


def _read_value(spec: PrefetchKey, value: Any, patient_id: str, read: PrefetchRead) -> None:
    where = f"prefetch.{spec.key}"
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise FhirError(400, "structure", f"{where} is not a FHIR resource (nor null)", where)
    rtype = value["resourceType"]
    if rtype == "OperationOutcome":
        read.missing[spec.key] = f"the client could not prefetch it: {_outcome_text(value)}"
        return
    if rtype == "Bundle":
        resources, problem = search_entries(value, spec.resource_type, where)
        if problem is not None:
            read.missing[spec.key] = problem
            return
    elif rtype == spec.resource_type:
        resources = [value]
    else:
        raise FhirError(400, "invalid", f"{where} must hold {spec.resource_type} data, not a {rtype}", where)
    for res in resources:
        other = foreign_patient(res, patient_id)
        if other is not None:
            element = where
            if rtype == "Bundle":
                index = next(i for i, e in enumerate(value["entry"]) if isinstance(e, dict) and e.get("resource") is res)
                element = f"{where}.entry[{index}].resource"
            raise FhirError(400, "invalid", f"{where} holds data of Patient/{other}, not of context.patientId "
                            f"{patient_id!r}", element)
    read.given[spec.resource_type] = resources


def read_prefetch(prefetch: Any, patient_id: str) -> PrefetchRead:
    """Sort the call's ``prefetch`` into data given, keys answered null, and keys to fetch."""
    if prefetch is not None and not isinstance(prefetch, dict):
        raise FhirError(400, "structure", "prefetch must be an object", "prefetch")
    values: Mapping[str, Any] = prefetch or {}
    read = PrefetchRead()
    for spec in PREFETCH_KEYS:
        if spec.key not in values:
            read.missing[spec.key] = "not prefetched"
        elif values[spec.key] is None:
            read.empty.append(spec.key)
            read.given[spec.resource_type] = []
        else:
            _read_value(spec, values[spec.key], patient_id, read)
    patients = read.given.get("Patient")
    if patients is not None and not patients:
        raise FhirError(412, "not-found", f"the CDS client has no Patient {patient_id!r} (prefetch.patient is null)",
                        "prefetch.patient")
    return read
