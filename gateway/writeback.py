"""Write results back to the FHIR store: one transaction of ``PUT``s by deterministic id.

Because every result carries an id determined by its inputs, writing the same results twice
updates the same resources (and the embedded store keeps the version when nothing changed):
repeating a request creates no duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.store.base import FhirStore
from netliver.fhir.builders import canonical_json
from netliver.fhir.codesystems import CANONICAL_BASE
from netliver.fhir.outcome import FhirError

__all__ = ["RESULT_TAG", "is_result", "tag_results", "transaction_bundle", "write_results"]

#: Tag on every resource the services write, so gathered inputs never include earlier results.
RESULT_TAG = {"system": f"{CANONICAL_BASE}/CodeSystem/tag", "code": "derived-result",
              "display": "Result computed by netliver"}


def tag_results(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``resources`` carrying :data:`RESULT_TAG` (and no earlier copy of it)."""
    out = []
    for res in resources:
        res = dict(res)
        meta = dict(res.get("meta") or {})
        tags = [t for t in meta.get("tag", []) if t.get("code") != RESULT_TAG["code"]]
        meta["tag"] = [*tags, RESULT_TAG]
        res["meta"] = meta
        out.append(res)
    return out


def is_result(resource: dict[str, Any]) -> bool:
    """True when ``resource`` carries :data:`RESULT_TAG` (a result netliver computed)."""
    return any(t.get("system") == RESULT_TAG["system"] and t.get("code") == RESULT_TAG["code"]
               for t in (resource.get("meta") or {}).get("tag", []))


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


def _stored(store: FhirStore, resource: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return store.read(resource["resourceType"], resource["id"])
    except FhirError as err:
        if err.status in (404, 410):
            return None
        raise


def _essence(resource: dict[str, Any], ignore: frozenset[str] = frozenset({"meta"})) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ignore}


def _is_repeat(store: FhirStore, resources: Sequence[dict[str, Any]]) -> bool:
    """True when every resource is already stored as it is, its Provenance differing only in the
    ``recorded`` time: writing again would only say "computed again", so nothing is rewritten."""
    provenances = [r for r in resources if r.get("resourceType") == "Provenance"]
    if not provenances:
        return False
    for res in provenances:
        stored = _stored(store, res)
        ignore = frozenset({"meta", "recorded"})
        if stored is None or _essence(stored, ignore) != _essence(res, ignore):
            return False
    for res in resources:
        if res.get("resourceType") == "Provenance":
            continue
        stored = _stored(store, res)
        if stored is None or canonical_json(_essence(stored)) != canonical_json(_essence(res)):
            return False
    return True


def write_results(store: FhirStore, resources: Sequence[dict[str, Any]], base_url: str) -> list[str]:
    """Write ``resources`` in one transaction; return ``Type/id/_history/vid`` of each.

    A repeated request whose results are all stored unchanged writes nothing (its Provenance
    would differ only in ``recorded``), so every version stays as it was."""
    if not resources or _is_repeat(store, resources):
        return []
    response = store.transaction(transaction_bundle(resources), base_url)
    written = []
    for entry in response.get("entry", []):
        loc = entry.get("response", {}).get("location")
        if loc:
            written.append(str(loc).replace(base_url.rstrip("/") + "/", ""))
    return written
