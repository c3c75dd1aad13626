"""The one registry of what the FHIR API does: interactions, search parameters, result
parameters and includes per resource type.

The CapabilityStatement (:mod:`gateway.metadata`), the query parser
(:mod:`gateway.store.search_params`) and the search index (:mod:`gateway.store.indexing`) are
all derived from it, so what is published is what is done.

Parameter names, types and element paths follow the FHIR R4 search parameter registry
(``searchparameter-registry.html``); ``definition`` is the canonical URL of the standard
SearchParameter. A path is dotted element names; ``x[x]`` stands for every ``x<Type>`` choice
element; lists are walked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = [
    "COMMON_PARAMS",
    "INTERACTIONS",
    "RESULT_PARAMETERS",
    "SERVED_TYPES",
    "SYSTEM_INTERACTIONS",
    "SearchParam",
    "declared_params",
    "include_targets",
    "param_of",
    "registry_fingerprint",
    "revinclude_sources",
]

_SP = "http://hl7.org/fhir/SearchParameter"


@dataclass(frozen=True)
class SearchParam:
    """One search parameter of one resource type."""

    name: str
    type: str  # token | reference | date | string
    paths: tuple[str, ...]
    #: canonical URL of the standard SearchParameter ("" for a parameter of this server only)
    definition: str
    documentation: str = ""
    #: reference parameters: the types a reference may point to (empty = any)
    targets: tuple[str, ...] = ()
    #: modifiers accepted beside ``:missing`` (``exact``/``contains`` for strings, a type for references)
    modifiers: tuple[str, ...] = ()


def _token(name: str, *paths: str, definition: str, doc: str = "") -> SearchParam:
    return SearchParam(name, "token", paths, f"{_SP}/{definition}", doc)


def _ref(name: str, *paths: str, definition: str, targets: tuple[str, ...] = (), doc: str = "") -> SearchParam:
    return SearchParam(name, "reference", paths, f"{_SP}/{definition}", doc, targets)


def _date(name: str, *paths: str, definition: str, doc: str = "") -> SearchParam:
    return SearchParam(name, "date", paths, f"{_SP}/{definition}", doc)


def _string(name: str, *paths: str, definition: str, doc: str = "") -> SearchParam:
    return SearchParam(name, "string", paths, f"{_SP}/{definition}", doc, modifiers=("exact", "contains"))


#: Parameters of every resource type (FHIR R4 §3.1.1.5 "Resource" parameters).
COMMON_PARAMS: tuple[SearchParam, ...] = (
    _token("_id", "id", definition="Resource-id", doc="logical id"),
    _date("_lastUpdated", "meta.lastUpdated", definition="Resource-lastUpdated", doc="when the version was stored"),
    _token("_tag", "meta.tag", definition="Resource-tag"),
)

#: Result parameters understood on every search (FHIR R4 §3.1.1.5).
#: ``_totalMethod`` is the name some clients (fhirpy's ``count()``) use for ``_total``.
RESULT_PARAMETERS = frozenset({"_count", "_offset", "_sort", "_format", "_include", "_revinclude",
                               "_summary", "_elements", "_total", "_totalMethod", "_pretty"})

_SUBJECT_TARGETS = ("Patient", "Group", "Device", "Location")


def _patient_refs(*paths: str, definition: str = "clinical-patient") -> SearchParam:
    return _ref("patient", *paths, definition=definition, targets=("Patient",), doc="the patient (subject of type Patient)")


def _clinical(rtype: str, code_path: str, *, status: bool = True) -> tuple[SearchParam, ...]:
    """identifier, code, status, subject and patient of the clinical resources."""
    params = [_token("identifier", "identifier", definition="clinical-identifier"),
              _token("code", code_path, definition="clinical-code")]
    if status:
        params.append(_token("status", "status", definition=f"{rtype}-status"))
    params += [_ref("subject", "subject", definition=f"{rtype}-subject", targets=_SUBJECT_TARGETS),
               _patient_refs("subject")]
    return tuple(params)


_TYPES: dict[str, tuple[SearchParam, ...]] = {
    "Patient": (
        _token("identifier", "identifier", definition="Patient-identifier"),
        _string("name", "name", definition="Patient-name", doc="any part of a name"),
        _string("family", "name.family", definition="individual-family"),
        _string("given", "name.given", definition="individual-given"),
        _date("birthdate", "birthDate", definition="individual-birthdate"),
        _token("gender", "gender", definition="individual-gender"),
        SearchParam("patient", "token", ("id",), "", "the patient itself (Patient/{id} or {id}), for "
                    "queries written for every type of the patient compartment"),
    ),
    "Observation": (
        *_clinical("Observation", "code"),
        _token("category", "category", definition="Observation-category"),
        _date("date", "effective[x]", definition="clinical-date", doc="effective[x]"),
        _ref("focus", "focus", definition="Observation-focus"),
        _ref("derived-from", "derivedFrom", definition="Observation-derived-from"),
        _ref("has-member", "hasMember", definition="Observation-has-member", targets=("Observation",)),
    ),
    "Condition": (
        *_clinical("Condition", "code", status=False),
        _token("clinical-status", "clinicalStatus", definition="Condition-clinical-status"),
        _token("category", "category", definition="Condition-category"),
        _date("onset-date", "onset[x]", definition="Condition-onset-date"),
        _date("recorded-date", "recordedDate", definition="Condition-recorded-date"),
    ),
    "Procedure": (
        *_clinical("Procedure", "code"),
        _token("category", "category", definition="Procedure-category"),
        _date("date", "performed[x]", definition="clinical-date", doc="performed[x]"),
    ),
    "MedicationStatement": (
        *_clinical("MedicationStatement", "medicationCodeableConcept"),
        _token("category", "category", definition="MedicationStatement-category"),
        _date("effective", "effective[x]", definition="MedicationStatement-effective"),
    ),
    "AllergyIntolerance": (
        _token("identifier", "identifier", definition="clinical-identifier"),
        _token("code", "code", definition="clinical-code"),
        _token("clinical-status", "clinicalStatus", definition="AllergyIntolerance-clinical-status"),
        _token("category", "category", definition="AllergyIntolerance-category"),
        _date("date", "recordedDate", definition="clinical-date"),
        _patient_refs("patient"),
    ),
    "ImagingStudy": (
        _token("identifier", "identifier", definition="clinical-identifier"),
        _token("status", "status", definition="ImagingStudy-status"),
        _ref("subject", "subject", definition="ImagingStudy-subject", targets=("Patient", "Group", "Device")),
        _patient_refs("subject"),
        _date("started", "started", definition="ImagingStudy-started"),
        _token("modality", "series.modality", definition="ImagingStudy-modality"),
        _ref("endpoint", "endpoint", "series.endpoint", definition="ImagingStudy-endpoint", targets=("Endpoint",)),
    ),
    "BodyStructure": (
        _token("identifier", "identifier", definition="BodyStructure-identifier"),
        _token("location", "location", definition="BodyStructure-location"),
        _token("morphology", "morphology", definition="BodyStructure-morphology"),
        _patient_refs("patient", definition="BodyStructure-patient"),
    ),
    "DiagnosticReport": (
        *_clinical("DiagnosticReport", "code"),
        _token("category", "category", definition="DiagnosticReport-category"),
        _date("date", "effective[x]", definition="clinical-date", doc="effective[x]"),
        _date("issued", "issued", definition="DiagnosticReport-issued"),
        _ref("result", "result", definition="DiagnosticReport-result", targets=("Observation",)),
    ),
    "Provenance": (
        _ref("target", "target", definition="Provenance-target"),
        _ref("patient", "target", definition="Provenance-patient", targets=("Patient",)),
        _ref("agent", "agent.who", definition="Provenance-agent"),
        _ref("entity", "entity.what", definition="Provenance-entity"),
        _date("recorded", "recorded", definition="Provenance-recorded"),
    ),
    "Task": (
        _token("identifier", "identifier", definition="Task-identifier"),
        _token("status", "status", definition="Task-status"),
        _token("code", "code", definition="Task-code"),
        _ref("subject", "for", definition="Task-subject", doc="Task.for"),
        _ref("patient", "for", definition="Task-patient", targets=("Patient",)),
        _ref("focus", "focus", definition="Task-focus"),
        _date("authored-on", "authoredOn", definition="Task-authored-on"),
        _date("modified", "lastModified", definition="Task-modified"),
    ),
    "AuditEvent": (
        _date("date", "recorded", definition="AuditEvent-date"),
        _ref("agent", "agent.who", definition="AuditEvent-agent"),
        _ref("entity", "entity.what", definition="AuditEvent-entity"),
        _ref("patient", "agent.who", "entity.what", definition="AuditEvent-patient", targets=("Patient",)),
        _token("type", "type", definition="AuditEvent-type"),
        _token("subtype", "subtype", definition="AuditEvent-subtype"),
        _token("action", "action", definition="AuditEvent-action"),
        _token("outcome", "outcome", definition="AuditEvent-outcome"),
    ),
    "Endpoint": (
        _token("identifier", "identifier", definition="Endpoint-identifier"),
        _token("status", "status", definition="Endpoint-status"),
        _string("name", "name", definition="Endpoint-name"),
        _token("connection-type", "connectionType", definition="Endpoint-connection-type"),
    ),
}

#: The resource types the CapabilityStatement lists, with their own parameters.
SERVED_TYPES: tuple[str, ...] = tuple(_TYPES)

#: Interactions of every served resource type (FHIR R4 §3.1.0 TypeRestfulInteraction).
INTERACTIONS: tuple[str, ...] = ("read", "vread", "update", "patch", "delete", "history-instance",
                                 "history-type", "create", "search-type")
#: Whole-system interactions (SystemRestfulInteraction).
SYSTEM_INTERACTIONS: tuple[str, ...] = ("transaction", "batch", "history-system")


def registry_fingerprint() -> str:
    """A digest of every parameter's name, type, paths and targets: it changes exactly when a
    search index built for the previous registry would answer differently."""
    items = [(rtype, p.name, p.type, p.paths, p.targets) for rtype in ("*", *SERVED_TYPES)
             for p in (COMMON_PARAMS if rtype == "*" else _TYPES[rtype])]
    return hashlib.sha256(repr(items).encode()).hexdigest()[:32]


def declared_params(resource_type: str) -> tuple[SearchParam, ...]:
    """The search parameters of ``resource_type``: its own and the common ones. Resource types
    the registry does not list (served all the same) have the common ones only."""
    return (*COMMON_PARAMS, *_TYPES.get(resource_type, ()))


def param_of(resource_type: str, name: str) -> SearchParam | None:
    for param in declared_params(resource_type):
        if param.name == name:
            return param
    return None


def include_targets(resource_type: str) -> tuple[str, ...]:
    """``_include`` values a search of ``resource_type`` accepts (``Type:param``)."""
    return tuple(f"{resource_type}:{p.name}" for p in declared_params(resource_type) if p.type == "reference")


def revinclude_sources(resource_type: str) -> tuple[str, ...]:
    """``_revinclude`` values a search of ``resource_type`` accepts: every reference parameter
    of a served type that may point to it."""
    out = []
    for source in SERVED_TYPES:
        for p in _TYPES[source]:
            if p.type == "reference" and (not p.targets or resource_type in p.targets):
                out.append(f"{source}:{p.name}")
    return tuple(out)
