"""The FHIR store on an upstream FHIR R4 server (``FHIR_UPSTREAM_URL``).

Implements :class:`gateway.store.base.FhirStore` through :class:`netliver.upstream.FhirClient`,
so that reads and searches through the gateway behave as with the embedded store:

- search parameters are checked here with the same rules as the SQL store (an unknown
  parameter is a 400 naming it, before any upstream call) and sent with
  ``Prefer: handling=strict``;
- ``fullUrl`` and ``link`` URLs under the upstream base are rewritten to the gateway's base;
- an update whose content equals the upstream's current version (ignoring ``meta.versionId`` and
  ``meta.lastUpdated``) is not sent, so repeating a write creates no version even on servers
  without no-op detection;
- an unreachable server is a 503 with ``Retry-After``; upstream OperationOutcomes are relayed
  with their status.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import requests

from gateway.store.base import require_resource_type
from gateway.store.bundles import entry_error, error_entry, history_window, plan_bundle, shape
from gateway.store.content import same_content
from gateway.store.registry import param_of
from gateway.store.search_params import SearchQuery, parse_search
from netliver.fhir.outcome import FhirError
from netliver.fhir.validation import check_resource
from netliver.upstream import FhirClient

__all__ = ["UpstreamStore"]

_RETURN_REPRESENTATION = {"Prefer": "return=representation"}


class UpstreamStore:
    """A :class:`~gateway.store.base.FhirStore` on a remote FHIR R4 server."""

    def __init__(self, base_url: str, token: str = "", timeout_s: float = 30,
                 *, session: requests.Session | None = None, transaction_size: int = 50) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = FhirClient(self.base_url, token=token, timeout_s=timeout_s, session=session)
        self.transaction_size = max(1, transaction_size)

    # -- helpers --------------------------------------------------------------------------------
    def _rebase(self, url: Any, base_url: str) -> Any:
        if isinstance(url, str) and base_url and url.startswith(self.base_url + "/"):
            return base_url.rstrip("/") + url[len(self.base_url):]
        if isinstance(url, str) and base_url and url.startswith(self.base_url + "?"):
            return base_url.rstrip("/") + url[len(self.base_url):]
        return url

    def _rebase_bundle(self, bundle: dict[str, Any], base_url: str) -> dict[str, Any]:
        for link in bundle.get("link") or []:
            if isinstance(link, dict) and "url" in link:
                link["url"] = self._rebase(link["url"], base_url)
        for entry in bundle.get("entry") or []:
            if not isinstance(entry, dict):
                continue
            if "fullUrl" in entry:
                entry["fullUrl"] = self._rebase(entry["fullUrl"], base_url)
            resource = entry.get("resource")
            if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
                self._rebase_bundle(resource, base_url)
        return bundle

    def _json(self, resp: requests.Response, fallback: tuple[str, str] | None = None) -> dict[str, Any]:
        if resp.content:
            try:
                body = resp.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and body.get("resourceType") and body.get("resourceType") != "OperationOutcome":
                return body
        if fallback is not None:
            return self.read(*fallback)
        raise FhirError(502, "exception", f"{self.base_url} answered {resp.status_code} without a resource")

    # -- reads ----------------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        require_resource_type(resource_type)
        return self.client.read(resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> dict[str, Any]:
        require_resource_type(resource_type)
        resp = self.client.request("GET", f"{resource_type}/{resource_id}/_history/{version_id}")
        return self._json(resp)

    def history(self, resource_type: str, resource_id: str, *, base_url: str = "") -> dict[str, Any]:
        require_resource_type(resource_type)
        bundle = self._json(self.client.request("GET", f"{resource_type}/{resource_id}/_history"))
        return self._rebase_bundle(bundle, base_url)

    def history_all(self, resource_type: str | None, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        history_window(params)  # the same 400s as the embedded store
        path = f"{resource_type}/_history" if resource_type else "_history"
        resp = self.client.request("GET", f"{path}?{urlencode(params)}" if params else path)
        return self._rebase_bundle(self._json(resp), base_url)

    def search(self, resource_type: str, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        """Checked like the embedded store's search, then sent upstream with an explicit
        ``_count`` (so pages are predictable) and the parameters only this gateway knows
        translated; ``_summary``/``_elements`` are applied here too (servers may ignore them).
        Paging: the upstream's links are rewritten to the gateway, and when it reports a total
        but gives no ``next`` link the gateway pages by ``_offset`` itself."""
        require_resource_type(resource_type)
        cursors = [(k, v) for k, v in params if k in _PAGING_TOKENS]
        query = parse_search(resource_type, [(k, v) for k, v in params if k not in _PAGING_TOKENS])
        sent = [*_upstream_params(resource_type, params), *cursors]
        if not any(k == "_count" for k, _ in sent):
            sent.append(("_count", str(query.count)))
        resp = self.client.request("GET", f"{resource_type}?{urlencode(sent)}", headers={"Prefer": "handling=strict"})
        bundle = self._rebase_bundle(self._json(resp), base_url)
        if query.summary or query.elements:
            for entry in bundle.get("entry") or []:
                if isinstance(entry.get("resource"), dict):
                    entry["resource"] = shape(entry["resource"], query)
        _add_offset_paging(bundle, query, base_url, cursors)
        return bundle

    def health(self) -> dict[str, Any]:
        try:
            self.client.request("GET", "metadata")
        except FhirError as err:
            return {"status": "fail", "detail": f"{self.base_url}: {err.diagnostics}"}
        return {"status": "pass", "detail": f"upstream FHIR server {self.base_url} reachable"}

    # -- writes ---------------------------------------------------------------------------------
    def put(self, resource: dict[str, Any], *, if_match: str | None = None) -> tuple[dict[str, Any], bool]:
        check_resource(resource)
        rtype = require_resource_type(str(resource["resourceType"]))
        rid = resource.get("id")
        if not rid:
            raise FhirError(400, "required", "an update needs the resource id", f"{rtype}.id")
        current = None
        if if_match is None:
            current = self._current(rtype, str(rid))
            if current is not None and same_content(current, resource):
                return current, False
        headers = dict(_RETURN_REPRESENTATION)
        if if_match:
            headers["If-Match"] = if_match
        existed = if_match is not None or current is not None
        resp = self.client.request("PUT", f"{rtype}/{rid}", json_body=resource, headers=headers)
        return self._json(resp, (rtype, str(rid))), resp.status_code == 201 or not existed

    def _current(self, rtype: str, rid: str) -> dict[str, Any] | None:
        try:
            return self.client.read(rtype, rid)
        except FhirError as err:
            if err.status in (404, 410):
                return None
            raise

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        check_resource(resource)
        rtype = require_resource_type(str(resource["resourceType"]))
        body = {k: v for k, v in resource.items() if k != "id"}
        resp = self.client.request("POST", rtype, json_body=body, headers=_RETURN_REPRESENTATION)
        fallback = _location_identity(resp.headers.get("Location", ""), rtype)
        return self._json(resp, fallback)

    def delete(self, resource_type: str, resource_id: str) -> None:
        require_resource_type(resource_type)
        self.client.request("DELETE", f"{resource_type}/{resource_id}", ok=(200, 202, 204, 404, 410))

    def transaction(self, bundle: dict[str, Any], base_url: str) -> dict[str, Any]:
        plan = plan_bundle(bundle)  # the same 400/422 checks as the embedded store
        errors: dict[int, FhirError] = dict(plan.errors)
        for entry in plan.entries:
            if entry.resource is not None:
                try:
                    check_resource(entry.resource)
                except FhirError as err:
                    if plan.kind != "batch":
                        raise entry_error(entry.index, err, entry.resource_type) from None
                    errors[entry.index] = entry_error(entry.index, err, entry.resource_type)
        if errors:
            return self._batch_without(bundle, errors, base_url)
        entries = list(bundle.get("entry") or [])
        if plan.kind == "batch" or len(entries) <= self.transaction_size or not _chunkable(entries):
            resp = self.client.request("POST", "", json_body=bundle, headers=_RETURN_REPRESENTATION)
            return self._rebase_bundle(self._json(resp), base_url)
        return self._in_chunks(bundle, entries, base_url)

    def _in_chunks(self, bundle: dict[str, Any], entries: list[dict[str, Any]], base_url: str) -> dict[str, Any]:
        """A transaction larger than the upstream takes, sent as several transactions of at most
        ``transaction_size`` entries, Provenance last. Every entry is a PUT by id, so a retry
        after a failed chunk writes the same resources again and nothing twice; the Provenance
        is written only once everything it names is stored."""
        order = sorted(range(len(entries)), key=lambda i: _resource_type(entries[i]) == "Provenance")
        answered: dict[int, dict[str, Any]] = {}
        for start in range(0, len(order), self.transaction_size):
            chunk = order[start:start + self.transaction_size]
            sent = {**bundle, "entry": [entries[i] for i in chunk]}
            resp = self.client.request("POST", "", json_body=sent, headers=_RETURN_REPRESENTATION)
            answer = self._rebase_bundle(self._json(resp), base_url)
            answered.update(zip(chunk, answer.get("entry") or [], strict=False))
        return {"resourceType": "Bundle", "type": "transaction-response",
                "entry": [answered.get(i, {}) for i in range(len(entries))]}

    def _batch_without(self, bundle: dict[str, Any], errors: dict[int, FhirError], base_url: str) -> dict[str, Any]:
        """A batch whose invalid entries are answered here and the others sent upstream."""
        entries = list(bundle.get("entry") or [])
        valid = [i for i in range(len(entries)) if i not in errors]
        answered: list[dict[str, Any]] = []
        if valid:
            sent = {**bundle, "entry": [entries[i] for i in valid]}
            resp = self.client.request("POST", "", json_body=sent, headers=_RETURN_REPRESENTATION)
            answered = list(self._rebase_bundle(self._json(resp), base_url).get("entry") or [])
        out: dict[int, dict[str, Any]] = {i: error_entry(err) for i, err in errors.items()}
        out.update(zip(valid, answered, strict=False))
        return {"resourceType": "Bundle", "type": "batch-response", "entry": [out[i] for i in sorted(out)]}


#: Opaque paging parameters of upstream servers' ``next`` links, passed back unchanged.
_PAGING_TOKENS = frozenset({"_cursor", "_page_token", "_getpages", "_getpagesoffset"})


def _upstream_params(resource_type: str, params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The parameters as the upstream understands them: this gateway's own parameters (no
    standard definition, e.g. ``Patient?patient=``, which is the id) become standard ones."""
    out = []
    for name, value in params:
        if name in _PAGING_TOKENS:
            continue
        param = param_of(resource_type, name.split(":", 1)[0])
        if name == "_totalMethod":  # not every server knows this name of _total
            out.append(("_total", "accurate" if value == "count" else value))
        elif param is not None and param.paths == ("id",) and name != "_id":
            out.append(("_id", ",".join(v.rsplit("/", 1)[-1] for v in value.split(","))))
        else:
            out.append((name, value))
    return out


def _add_offset_paging(bundle: dict[str, Any], query: SearchQuery, base_url: str,
                       cursors: list[tuple[str, str]]) -> None:
    links = [link for link in bundle.get("link") or [] if isinstance(link, dict)]
    if any(link.get("relation") == "next" for link in links) or cursors:
        return
    total = bundle.get("total")
    if not isinstance(total, int) or not query.count or query.offset + query.count >= total:
        return
    page = [*query.filters, *([("_sort", query.sort)] if query.sort else []),
            ("_count", str(query.count)), ("_offset", str(query.offset + query.count))]
    links.append({"relation": "next", "url": f"{base_url.rstrip('/')}/{query.resource_type}?{urlencode(page)}"})
    bundle["link"] = links


def _resource_type(entry: dict[str, Any]) -> str:
    resource = entry.get("resource")
    return str(resource.get("resourceType", "")) if isinstance(resource, dict) else ""


def _chunkable(entries: list[dict[str, Any]]) -> bool:
    """Only PUTs by id may be split: a POST's server-assigned id (and references to its
    ``urn:uuid``) hold only inside one transaction."""
    return all(isinstance(e.get("request"), dict) and e["request"].get("method") == "PUT"
               and "?" not in str(e["request"].get("url", "")) for e in entries)


def _location_identity(location: str, rtype: str) -> tuple[str, str] | None:
    """(type, id) from a ``Location: …/Type/id/_history/v`` header."""
    parts = [p for p in location.split("?")[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == rtype:
        return rtype, parts[-1]
    return None

