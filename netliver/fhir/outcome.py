"""OperationOutcome errors.

Every error a netliver process returns is a FHIR ``OperationOutcome`` (FHIR R4 §3.1.0.4) with
an HTTP status from the public contract. Raise :class:`FhirError` anywhere in a request; the
Flask base in :mod:`netliver.web` turns it into the response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FhirError", "Issue", "operation_outcome"]


@dataclass(frozen=True)
class Issue:
    """One ``OperationOutcome.issue``.

    ``code`` is from the FHIR IssueType value set (``invalid``, ``required``, ``value``,
    ``not-found``, ``security``, ``forbidden``, ``too-long``, ``throttled``, ``transient``,
    ``not-supported``, ``processing``, ``exception``, ``conflict``...).
    """

    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()
    severity: str = "error"
    #: ``(system, code)`` of a machine-readable detail (``issue.details.coding``), if any.
    details: tuple[str, str] | None = None

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.details:
            out["details"] = {"coding": [{"system": self.details[0], "code": self.details[1]}]}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    """Build an ``OperationOutcome`` resource (as JSON) from issues."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


@dataclass
class FhirError(Exception):
    """An error answered as an OperationOutcome with an HTTP status.

    >>> FhirError(422, "value", "bilirubin must not be negative", expression=["Observation.valueQuantity"])
    """

    status: int
    code: str
    diagnostics: str
    expression: Sequence[str] | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    more: Sequence[Issue] = ()
    details: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        super().__init__(f"{self.status} {self.code}: {self.diagnostics}")

    @property
    def issues(self) -> list[Issue]:
        expr: tuple[str, ...]
        if self.expression is None:
            expr = ()
        elif isinstance(self.expression, str):
            expr = (self.expression,)
        else:
            expr = tuple(self.expression)
        return [Issue(self.code, self.diagnostics, expr, details=self.details), *self.more]

    def to_fhir(self) -> dict[str, Any]:
        return operation_outcome(self.issues)

    @classmethod
    def from_issues(cls, status: int, issues: Sequence[Issue], headers: Mapping[str, str] | None = None) -> FhirError:
        """One error carrying several issues (e.g. every invalid element of a Bundle)."""
        if not issues:
            raise ValueError("an error needs at least one issue")
        first, *rest = issues
        return cls(status, first.code, first.diagnostics, list(first.expression),
                   headers=dict(headers or {}), more=tuple(rest), details=first.details)


def unprocessable(diagnostics: str, expression: str | Sequence[str] | None = None,
                  code: str = "value") -> FhirError:
    """422: valid FHIR but unusable (missing input, impossible value)."""
    return FhirError(422, code, diagnostics, expression)
