"""One patient's compartment: what a token with ``patient/`` scopes may see and change (pure).

HL7 SMART App Launch 2.x, "Scopes and Launch Context": ``patient/<Type>.<perms>`` grants access
to the resources of the patient in the token's launch context and to nothing else. The gateway
takes that set to be the FHIR R4 Patient compartment (``compartmentdefinition-patient``) over
the types it serves: the Patient itself, and each resource whose ``patient`` search parameter
(:mod:`gateway.store.registry`, e.g. ``Observation.subject``, ``AllergyIntolerance.patient``,
``Provenance.target``) names that Patient.

Types outside the compartment (Task, AuditEvent, Endpoint, and anything not served) are never
reachable with ``patient/`` scopes, and neither are interactions that cannot be narrowed to one
patient (transactions, type and system history, conditional writes). Searches are narrowed
with ``patient=Patient/<id>`` (``_id=<id>`` for Patient), which is the compartment's defining
parameter, so a patient-scoped search never returns another patient's matches; what
``_include``/``_revinclude`` add is filtered the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.store.indexing import values_at
from gateway.store.registry import param_of
from gateway.store.search_params import parse_reference
from netliver.fhir.outcome import FhirError, Issue

__all__ = [
    "COMPARTMENT_TYPES",
    "check_input_bundle",
    "check_results",
    "confined_search",
    "in_compartment",
    "outside",
    "visible_entries",
]

#: Served types of the R4 Patient compartment other than Patient, with the parameter naming the
#: patient. Task and AuditEvent are left out: job control and the audit trail are not a patient's.
COMPARTMENT_TYPES: tuple[str, ...] = (
    "Observation", "Condition", "Procedure", "MedicationStatement", "AllergyIntolerance", "ImagingStudy",
    "BodyStructure", "DiagnosticReport", "Provenance",
)


def outside(diagnostics: str, expression: str | Sequence[str] | None = None) -> FhirError:
    """403 for an access beyond the token's patient (RFC 6750 §3 ``insufficient_scope``)."""
    return FhirError(403, "forbidden", f"the token's patient/ scopes do not allow this: {diagnostics}",
                     expression, headers={"WWW-Authenticate": 'Bearer realm="netliver", error="insufficient_scope"'})


def _patient_of(reference: str, aliases: Mapping[str, str]) -> str | None:
    ref = parse_reference(aliases.get(reference, reference))
    return ref.resource_id if ref is not None and ref.resource_type == "Patient" else None


def in_compartment(resource: Mapping[str, Any], patient_id: str, aliases: Mapping[str, str] | None = None) -> bool:
    """Whether ``resource`` is in Patient ``patient_id``'s compartment. ``aliases`` maps a
    Bundle's ``fullUrl`` values (``urn:uuid:…``) to ``Type/id``, for resources inside a Bundle."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return resource.get("id") == patient_id
    if rtype not in COMPARTMENT_TYPES:
        return False
    param = param_of(str(rtype), "patient")
    if param is None:
        return False
    known = aliases or {}
    return any(isinstance(v, Mapping) and isinstance(v.get("reference"), str)
               and _patient_of(v["reference"], known) == patient_id
               for path in param.paths for v in values_at(resource, path))


def confined_search(resource_type: str, params: Iterable[tuple[str, str]], patient_id: str) -> list[tuple[str, str]]:
    """``params`` narrowed to the patient (an AND with what the caller asked)."""
    if resource_type == "Patient":
        return [*params, ("_id", patient_id)]
    if resource_type not in COMPARTMENT_TYPES:
        raise outside(f"{resource_type} is not in the Patient compartment")
    return [*params, ("patient", f"Patient/{patient_id}")]


def visible_entries(bundle: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """A searchset ``bundle`` without the entries (``_include``d or ``_revinclude``d) outside
    the patient's compartment. OperationOutcome entries stay."""
    kept = [e for e in bundle.get("entry") or []
            if not isinstance(e.get("resource"), dict) or e["resource"].get("resourceType") == "OperationOutcome"
            or in_compartment(e["resource"], patient_id)]
    return {**bundle, "entry": kept} if "entry" in bundle else bundle


def _aliases(entries: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in entries:
        resource = entry.get("resource")
        if isinstance(entry.get("fullUrl"), str) and isinstance(resource, Mapping) and resource.get("id"):
            found[entry["fullUrl"]] = f"{resource.get('resourceType')}/{resource['id']}"
    return found


def check_input_bundle(bundle: Mapping[str, Any], patient_id: str, where: str = "Bundle") -> None:
    """403 unless every Patient of an operation's input ``bundle`` is the token's patient and every
    resource of a compartment type is in its compartment (others, such as a Medication, carry no
    patient and pass)."""
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, Mapping)]
    aliases = _aliases(entries)
    issues = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource")
        if not isinstance(resource, Mapping):
            continue
        rtype = resource.get("resourceType")
        if (rtype == "Patient" or rtype in COMPARTMENT_TYPES) and not in_compartment(resource, patient_id, aliases):
            issues.append(Issue("forbidden", f"the token's patient/ scopes do not allow this: {rtype}/"
                                f"{resource.get('id', '?')} is not of Patient/{patient_id}",
                                (f"{where}.entry[{i}].resource",)))
    if issues:
        raise FhirError.from_issues(403, issues, headers={
            "WWW-Authenticate": 'Bearer realm="netliver", error="insufficient_scope"'})


def check_results(resources: Sequence[Mapping[str, Any]], patient_id: str) -> None:
    """403 unless every result an operation would write is the patient's: compartment types in
    the compartment, a Provenance only about these results or the patient."""
    written = {f"{r.get('resourceType')}/{r.get('id')}" for r in resources}
    for resource in resources:
        rtype = resource.get("resourceType")
        if rtype == "Provenance":
            targets = [str(t.get("reference", "")) for t in resource.get("target") or [] if isinstance(t, Mapping)]
            if all(t in written or _patient_of(t, {}) == patient_id for t in targets):
                continue
        elif rtype not in COMPARTMENT_TYPES and rtype != "Patient":
            raise outside(f"the operation would write a {rtype}, which is outside the Patient compartment")
        if not in_compartment(resource, patient_id):
            raise outside(f"the operation would write {rtype}/{resource.get('id')}, which is not of "
                          f"Patient/{patient_id}")
