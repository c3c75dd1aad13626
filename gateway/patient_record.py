"""A patient's record as the eligibility service reads it, gathered from the FHIR store.

Used by ``Patient/{id}/$evaluate-eligibility`` (:mod:`gateway.operations`) and by the CDS Hooks
service (:mod:`gateway.cds`), which fills in what the EHR did not prefetch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.store.base import FhirStore
from gateway.writeback import is_result

__all__ = ["ELIGIBILITY_READS", "gather_patient_bundle"]

#: The resource types the eligibility rules read (the scopes a caller needs to read them).
ELIGIBILITY_READS = ("Patient", "Observation", "Condition", "Procedure", "MedicationStatement",
                     "AllergyIntolerance", "ImagingStudy", "BodyStructure")

#: (resource type, search parameter naming the patient) gathered for Patient/{id}/$evaluate-eligibility.
_PATIENT_COMPARTMENT = (
    ("Observation", "subject"), ("Condition", "subject"), ("Procedure", "subject"),
    ("MedicationStatement", "subject"), ("AllergyIntolerance", "patient"),
    ("ImagingStudy", "subject"), ("BodyStructure", "patient"),
)


def gather_patient_bundle(store: FhirStore, patient_id: str, base_url: str, page_size: int = 500,
                          prefetched: Mapping[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The patient's resources from the store as a ``searchset`` Bundle (results excluded).

    ``prefetched`` maps a resource type to the resources a caller already holds (CDS Hooks
    prefetch); those types are taken from it, every other type is read from the store."""
    prefetched = prefetched or {}
    patients = prefetched.get("Patient")
    patient = patients[0] if patients else store.read("Patient", patient_id)
    entries: list[dict[str, Any]] = [{"fullUrl": f"{base_url}/Patient/{patient_id}", "resource": patient}]
    for rtype, param in _PATIENT_COMPARTMENT:
        if rtype in prefetched:
            entries.extend({"resource": res} for res in prefetched[rtype] if not is_result(res))
            continue
        offset = 0
        while True:
            page = store.search(rtype, [(param, f"Patient/{patient_id}"), ("_count", str(page_size)),
                                        ("_offset", str(offset))], base_url)
            batch = [e for e in page.get("entry", []) if e.get("resource")]
            entries.extend(e for e in batch if not is_result(e["resource"]))
            offset += len(batch)
            if not batch or offset >= int(page.get("total", offset)):
                break
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
