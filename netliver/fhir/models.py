"""The one module that imports FHIR models.

``fhir.resources`` 8 defaults to R5; the wire format of the contract is R4 (4.0.1 JSON), which
the R4B models read and write. Everything else imports models through :func:`model_class` and
:func:`parse_resource`, never from ``fhir.resources`` directly, so the two versions cannot mix.
Models are loaded at process start (:func:`preload`), not per request.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from fhir.resources import R4B
from fhir_core.types import FhirBase
from pydantic import ValidationError

from netliver.fhir.outcome import FhirError, Issue

__all__ = ["FHIR_VERSION", "is_resource_type", "model_class", "parse_resource", "preload", "validate_resource"]

FHIR_VERSION = "4.0.1"

#: Resource types the services read or write; loaded once at start.
COMMON_TYPES = (
    "Bundle", "Patient", "Observation", "Condition", "Procedure", "MedicationStatement",
    "AllergyIntolerance", "ImagingStudy", "BodyStructure", "Parameters", "Provenance", "Task",
    "DiagnosticReport", "OperationOutcome", "CapabilityStatement", "OperationDefinition",
    "CodeSystem", "Endpoint", "CarePlan", "Device",
)


@cache
def model_class(resource_type: str) -> Any:
    """The R4B model class for a resource type, or ``FhirError`` 400 if unknown."""
    try:
        return R4B.get_fhir_model_class(resource_type)
    except (ValueError, AttributeError) as exc:
        raise FhirError(400, "invalid", f"unknown FHIR resource type {resource_type!r}",
                        "resourceType") from exc


_ABSTRACT_TYPES = frozenset({"Resource", "DomainResource"})


@cache
def is_resource_type(name: str) -> bool:
    """True for a concrete resource type (not a datatype, not the abstract bases)."""
    from fhir.resources.R4B.resource import Resource

    if not name.isidentifier() or not name[:1].isupper() or name in _ABSTRACT_TYPES:
        return False
    try:
        return issubclass(R4B.get_fhir_model_class(name), Resource)
    except (ValueError, AttributeError, ImportError):
        return False


def preload(types: Iterable[str] = COMMON_TYPES) -> None:
    """Import model classes up front (first import costs ~0.2 s each family), with the classes
    of every element type they reach: fhir.resources resolves an element's class when an element
    of it is first validated, so a process's first dosimetry DiagnosticReport took 51 ms to
    validate and the next 0.9 ms (all of :data:`COMMON_TYPES` reach 117 classes, ~0.1 s more)."""
    seen: set[type] = set()
    pending = [model_class(name) for name in types]
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for info in getattr(cls, "model_fields", {}).values():
            pending.extend(_element_classes(info.annotation))


def _element_classes(annotation: Any) -> list[type]:
    """The model classes of the FHIR element types an annotation names (``Optional``, ``List``
    and unions opened)."""
    found: list[type] = []
    pending = [annotation]
    while pending:
        tp = pending.pop()
        if isinstance(tp, type) and issubclass(tp, FhirBase) and getattr(tp, "_model_klass", None):
            found.append(typing.cast(Any, tp).get_model_klass())
        pending.extend(typing.get_args(tp))
    return found


def _expression(resource_type: str, loc: tuple[int | str, ...]) -> str:
    parts = [resource_type]
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]"
        elif item not in ("__root__",):
            parts.append(str(item))
    return ".".join(parts)


def parse_resource(data: Any, expected: str | Iterable[str] | None = None) -> Any:
    """Validate JSON as an R4B resource and return the model.

    Raises ``FhirError`` 400 when ``data`` is not a FHIR resource (not an object, no or unknown
    ``resourceType``, structurally invalid), naming each offending element, and 422 when it is
    a valid resource of a type the operation cannot use.
    """
    if not isinstance(data, Mapping):
        raise FhirError(400, "invalid", "the body is not a FHIR resource (JSON object expected)")
    rtype = data.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise FhirError(400, "invalid", "the body has no resourceType", "resourceType")
    cls = model_class(rtype)
    if expected is not None:
        allowed = {expected} if isinstance(expected, str) else set(expected)
        if rtype not in allowed:
            raise FhirError(422, "not-supported",
                            f"expected a {' or '.join(sorted(allowed))}, got {rtype}", "resourceType")
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        issues = [
            Issue("structure", f"{err.get('msg', 'invalid')} (got {str(err.get('input'))[:80]!r})",
                  (_expression(rtype, tuple(err.get("loc", ()))),))
            for err in exc.errors()[:20]
        ]
        raise FhirError.from_issues(400, issues) from None


def validate_resource(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a resource built here and return it as JSON (used on outputs in tests)."""
    model = parse_resource(data)
    result: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    return result
