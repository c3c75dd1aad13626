"""Dose records gathered from the FHIR store for the operations across treatments.

``$dose-comparison`` names two voxel-dosimetry DiagnosticReports by reference; the gateway reads
them and their result Observations from the store and hands them to the dosimetry service as
``resource`` parameters, so the service compares what is stored, never what a caller claims.

``$sirt-activity`` with ``patient``: the gateway adds that patient's stored SIRT plans and voxel
dosimetry reports (with their Observations) as ``record`` parameters; the planner takes the
prior lung and normal-liver doses from them.

The voxel job links a lesion's SEG segment or RTSTRUCT ROI to its BodyStructure through
:func:`find_lesion_body_structure` (``BodyStructure.identifier`` ``urn:dicom:uid`` =
``urn:oid:<TrackingUID>``, else the BodyStructure whose id is the segment label).
"""

from __future__ import annotations

import re
from typing import Any

from gateway.store.base import FhirStore
from netliver.fhir.codesystems import OBSERVATION_CODE_SYSTEM
from netliver.fhir.outcome import FhirError
from netliver.fhir.parameters import parameters_of

__all__ = ["DOSE_READS", "find_lesion_body_structure", "with_compared_reports", "with_lesion_doses", "with_patient_dose_records"]

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


def _search_pages(store: FhirStore, rtype: str, params: list[tuple[str, str]], base_url: str,
                  page_size: int = 200) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every match of a search, page after page, and the resources its ``_include`` brought. No
    count of the matches is asked for (``_total=none``): the pages go on while the answer links a
    ``next`` one (or, from a server that counts anyway, until its total)."""
    found: list[dict[str, Any]] = []
    included: list[dict[str, Any]] = []
    while True:
        page = store.search(rtype, [*params, ("_count", str(page_size)), ("_offset", str(len(found))),
                                    ("_total", "none")], base_url)
        entries = [e for e in page.get("entry", []) if e.get("resource")]
        batch = [e["resource"] for e in entries if (e.get("search") or {}).get("mode", "match") == "match"]
        included.extend(e["resource"] for e in entries if (e.get("search") or {}).get("mode") == "include")
        found.extend(batch)
        has_next = any(link.get("relation") == "next" for link in page.get("link", []))
        if not batch or (len(found) >= int(page["total"]) if "total" in page else not has_next):
            return found, included


def _search_all(store: FhirStore, rtype: str, params: list[tuple[str, str]], base_url: str) -> list[dict[str, Any]]:
    return _search_pages(store, rtype, params, base_url)[0]


def with_patient_dose_records(store: FhirStore, body: dict[str, Any], base_url: str) -> dict[str, Any]:
    """``body`` plus one ``record`` parameter per stored SIRT plan and voxel-dosimetry report (and
    each report's Observations) of the Patient named by the ``patient`` parameter; ``body``
    unchanged without one. A ``record`` given by the caller is refused."""
    params = parameters_of(body)
    patient: str | None = None
    for i, param in enumerate(params):
        if param.get("name") == "record":
            raise FhirError(422, "not-supported", "record is not an input: with patient, the earlier plans and "
                            "dosimetry are read from the store", f"Parameters.parameter[{i}]")
        ref = (param.get("valueReference") or {}).get("reference") if param.get("name") == "patient" else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            patient = ref
    if patient is None:
        return body
    subject = ("subject", patient)
    plans = _search_all(store, "Observation", [subject, ("code", f"{OBSERVATION_CODE_SYSTEM}|sirt-activity-plan")],
                        base_url)
    # the reports' result Observations come with them (one search, not one read per Observation)
    reports, included = _search_pages(store, "DiagnosticReport",
                                      [subject, ("code", f"{OBSERVATION_CODE_SYSTEM}|voxel-dosimetry-report"),
                                       ("_include", "DiagnosticReport:result")], base_url)
    results = {f"{r.get('resourceType')}/{r.get('id')}": r for r in included}
    records: list[dict[str, Any]] = [*plans, *reports]
    for report in reports:
        for item in report.get("result") or []:
            ref = str(item.get("reference", ""))
            if ref.startswith("Observation/"):
                # one the search did not bring (gone from the store) is read, to be named as missing
                records.append(results.get(ref) or _read(store, ref, f"DiagnosticReport/{report.get('id')}.result"))
    return {**body, "parameter": [*params, *({"name": "record", "resource": r} for r in records)]}


_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def find_lesion_body_structure(store: FhirStore, tracking_uid: str, label: str, base_url: str) -> dict[str, Any]:
    """``{"reference": "BodyStructure/<id>"}`` of the lesion a segment is, or ``{"reference":
    None, "reason": ...}``: by TrackingUID first, else by the label as the BodyStructure id; two
    BodyStructures with one TrackingUID link neither."""
    if tracking_uid:
        found = _search_all(store, "BodyStructure", [("identifier", f"urn:dicom:uid|urn:oid:{tracking_uid}")],
                            base_url)
        if len(found) == 1:
            return {"reference": f"BodyStructure/{found[0]['id']}"}
        if len(found) > 1:
            ids = ", ".join(sorted(f"BodyStructure/{b['id']}" for b in found))
            return {"reference": None, "reason": f"TrackingUID {tracking_uid} names {ids}: not linked"}
    if _FHIR_ID.match(label):
        try:
            store.read("BodyStructure", label)
        except FhirError as err:
            if err.status not in (404, 410):
                raise
        else:
            return {"reference": f"BodyStructure/{label}"}
    return {"reference": None, "reason": f"no BodyStructure for segment {label!r}"
                                         + (f" (TrackingUID {tracking_uid})" if tracking_uid else "")}


def with_lesion_doses(store: FhirStore, bundle: dict[str, Any], base_url: str) -> dict[str, Any]:
    """``bundle`` (a ``$tumor-response`` input) plus the stored voxel-dose-metrics Observations of
    its patient whose ``focus`` is a lesion, so the response can stand beside each lesion's dose."""
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
    observations = [e.get("resource") or {} for e in entries]
    subjects = {str((r.get("subject") or {}).get("reference", "")) for r in observations
                if isinstance(r, dict) and r.get("resourceType") == "Observation" and isinstance(r.get("subject"), dict)}
    subjects = {s for s in subjects if s.startswith("Patient/")}
    if len(subjects) != 1:
        return bundle  # the response service names the problem with the lesions themselves
    present = {f"{(e.get('resource') or {}).get('resourceType')}/{(e.get('resource') or {}).get('id')}"
               for e in entries}
    doses = _search_all(store, "Observation", [("subject", subjects.pop()),
                                                ("code", f"{OBSERVATION_CODE_SYSTEM}|voxel-dose-metrics")], base_url)
    added = [{"fullUrl": f"{base_url}/Observation/{o['id']}", "resource": o} for o in doses
             if o.get("focus") and f"Observation/{o['id']}" not in present]
    return {**bundle, "entry": [*entries, *added]} if added else bundle
