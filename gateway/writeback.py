"""Write results back to the FHIR store: one transaction of ``PUT``s by deterministic id.

Because every result carries an id determined by its inputs, writing the same results twice
updates the same resources (and the embedded store keeps the version when nothing changed):
repeating a request creates no duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from netliver.fhir.outcome import FhirError

__all__ = ["transaction_bundle", "write_results"]


def transaction_bundle(resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    entries = []
    for res in resources:
        rtype, rid = res.get("resourceType"), res.get("id")
        if not rtype or not rid:
            raise FhirError(500, "exception", "a result to write has no resourceType or id")
        entries.append({
            "fullUrl": f"{rtype}/{rid}",
            "resource": res,
            "request": {"method": "PUT", "url": f"{rtype}/{rid}"},
        })
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def write_results(store: Any, resources: Sequence[dict[str, Any]], base_url: str,
                  conn: Any = None) -> list[str]:
    """Write ``resources`` in one transaction; return ``Type/id/_history/vid`` of each."""
    if not resources:
        return []
    bundle = transaction_bundle(resources)
    if conn is not None:
        response = store.transaction(bundle, base_url, conn=conn)
    else:
        response = store.transaction(bundle, base_url)
    written = []
    for entry in response.get("entry", []):
        loc = entry.get("response", {}).get("location")
        if loc:
            written.append(str(loc).replace(base_url.rstrip("/") + "/", ""))
    return written
