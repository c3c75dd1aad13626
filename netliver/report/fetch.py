"""Read one patient's compartment through FHIR searches and build its :class:`Case`.

A reader is anything with ``read(type, id)`` and ``search(type, params)`` returning FHIR JSON
(a ``searchset`` Bundle): the gateway's own store in process, or :class:`HttpReader` over the
gateway's REST API (the command line, the demo).
"""

from __future__ import annotations

from typing import Any, Protocol

from netliver import sessions
from netliver.fhir.outcome import FhirError
from netliver.report.case import Case, build_case

__all__ = ["CASE_SEARCHES", "FhirReader", "HttpReader", "load_case", "patient_resources"]

#: (resource type, search parameter naming the patient) read for the page.
CASE_SEARCHES = (("Observation", "subject"), ("DiagnosticReport", "subject"), ("BodyStructure", "patient"))
_PAGE = 500


class FhirReader(Protocol):
    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]: ...

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> dict[str, Any]: ...


class HttpReader:
    """A FHIR REST client of the gateway (``base`` ends in ``/fhir``)."""

    def __init__(self, base: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.base = base.rstrip("/")
        self.session = sessions.session()
        self.session.headers["Accept"] = "application/fhir+json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s

    def _get(self, path: str, params: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        resp = self.session.get(f"{self.base}/{path}", params=params, timeout=self.timeout_s)
        body: dict[str, Any] = resp.json() if resp.content else {}
        if resp.status_code >= 400:
            issue = (body.get("issue") or [{}])[0]
            raise FhirError(resp.status_code, issue.get("code", "exception"),
                            issue.get("diagnostics", f"GET {path} answered {resp.status_code}"))
        return body

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return self._get(f"{resource_type}/{resource_id}")

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        return self._get(resource_type, params)


def patient_resources(reader: FhirReader, patient_id: str) -> list[dict[str, Any]]:
    """Every Observation, DiagnosticReport and BodyStructure of the patient (all pages)."""
    found: list[dict[str, Any]] = []
    for rtype, param in CASE_SEARCHES:
        offset = 0
        while True:
            page = reader.search(rtype, [(param, f"Patient/{patient_id}"), ("_count", str(_PAGE)),
                                         ("_offset", str(offset))])
            batch = [e["resource"] for e in page.get("entry") or [] if isinstance(e.get("resource"), dict)]
            found.extend(batch)
            offset += len(batch)
            if not batch or offset >= int(page.get("total", offset)):
                break
    return found


def load_case(reader: FhirReader, patient_id: str) -> Case:
    """The patient's case (404 ``FhirError`` when the patient is unknown)."""
    patient = reader.read("Patient", patient_id)
    return build_case(patient, patient_resources(reader, patient_id))
