"""Dose records gathered from the FHIR store for the operations across treatments.

``$dose-comparison`` names two voxel-dosimetry DiagnosticReports by reference; the gateway reads
them and their result Observations from the store and hands them to the dosimetry service as
``resource`` parameters, so the service compares what is stored, never what a caller claims.
"""

from __future__ import annotations

from typing import Any

from gateway.store.base import FhirStore
from netliver.fhir.outcome import FhirError
from netliver.fhir.parameters import parameters_of

__all__ = ["DOSE_READS", "with_compared_reports"]

#: What a caller must be allowed to read for the dose operations.
DOSE_READS = ("DiagnosticReport", "Observation")


def _read(store: FhirStore, reference: str, where: str) -> dict[str, Any]:
    rtype, _, rid = reference.partition("/")
    try:
        return store.read(rtype, rid)
    except FhirError as err:
        if err.status in (404, 410):
            raise FhirError(422, "not-found", f"{reference} is not in the store", where) from err
        raise


def with_compared_reports(store: FhirStore, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` plus one ``resource`` parameter per stored report named by ``predicted`` or
    ``delivered`` and per Observation in its ``result``. A ``resource`` given by the caller is
    refused: the records come from the store."""
    params = parameters_of(body)
    for i, param in enumerate(params):
        if param.get("name") == "resource":
            raise FhirError(422, "not-supported", "$dose-comparison reads the results from the store; give "
                            "predicted and delivered as references", f"Parameters.parameter[{i}]")
    added: list[dict[str, Any]] = []
    for i, param in enumerate(params):
        where = f"Parameters.parameter[{i}]"
        if param.get("name") not in ("predicted", "delivered"):
            continue
        ref = (param.get("valueReference") or {}).get("reference")
        if not isinstance(ref, str) or not ref.startswith("DiagnosticReport/") or ref.count("/") != 1:
            raise FhirError(422, "value", f"{param.get('name')} must be a valueReference to DiagnosticReport/{{id}}",
                            f"{where}.valueReference")
        report = _read(store, ref, f"{where}.valueReference")
        added.append({"name": "resource", "resource": report})
        for item in report.get("result") or []:
            obs_ref = str(item.get("reference", ""))
            if obs_ref.startswith("Observation/"):
                added.append({"name": "resource", "resource": _read(store, obs_ref, f"{where}.valueReference")})
    return {**body, "parameter": [*params, *added]}
