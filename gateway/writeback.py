"""Write results back to the FHIR store: one transaction of ``PUT``s by deterministic id.

Because every result carries an id determined by its inputs, writing the same results twice
updates the same resources (and the embedded store keeps the version when nothing changed):
repeating a request creates no duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.store.content import content_key
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


def _stored(store: Any, resource: dict[str, Any], conn: Any) -> dict[str, Any] | None:
    try:
        if conn is not None:
            found: dict[str, Any] = store.read(resource["resourceType"], resource["id"], conn=conn)
        else:
            found = store.read(resource["resourceType"], resource["id"])
    except FhirError as err:
        if err.status in (404, 410):
            return None
        raise
    return found


def _essence(resource: dict[str, Any], ignore: frozenset[str] = frozenset({"meta"})) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ignore}


def _is_repeat(store: Any, resources: Sequence[dict[str, Any]], conn: Any) -> bool:
    """True when every resource is already stored as it is, its Provenance differing only in the
    ``recorded`` time: writing again would only say "computed again", so nothing is rewritten."""
    provenances = [r for r in resources if r.get("resourceType") == "Provenance"]
    if not provenances:
        return False
    for res in provenances:
        stored = _stored(store, res, conn)
        ignore = frozenset({"meta", "recorded"})
        if stored is None or content_key(_essence(stored, ignore)) != content_key(_essence(res, ignore)):
            return False
    for res in resources:
        if res.get("resourceType") == "Provenance":
            continue
        stored = _stored(store, res, conn)
        if stored is None or content_key(_essence(stored)) != content_key(_essence(res)):
            return False
    return True


def write_results(store: Any, resources: Sequence[dict[str, Any]], base_url: str,
                  conn: Any = None) -> list[str]:
    """Write ``resources`` in one transaction; return ``Type/id/_history/vid`` of each.

    A repeated request whose results are all stored unchanged writes nothing (its Provenance
    would differ only in ``recorded``), so every version stays as it was."""
    if not resources or _is_repeat(store, resources, conn):
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
