"""The FHIR REST API of the gateway (FHIR R4 §3.1.0): read, vread, history, search, update,
create, delete and transaction/batch on the configured :class:`~gateway.store.base.FhirStore`.

Routes (blueprint ``fhir_rest``, prefix ``/fhir``)::

    GET    /fhir/<type>/<id>                  read
    GET    /fhir/<type>/<id>/_history/<vid>   vread
    GET    /fhir/<type>/<id>/_history         history
    GET    /fhir/<type>                       search (query string)
    POST   /fhir/<type>/_search               search (form-encoded body)
    PUT    /fhir/<type>/<id>                  update / create by id (If-Match honoured)
    POST   /fhir/<type>                       create (If-None-Exist honoured)
    DELETE /fhir/<type>/<id>                  delete
    POST   /fhir  (or /fhir/)                 transaction or batch Bundle

Only concrete R4 resource types are served (404 for any other name). Every view states the
types it reads or writes with :func:`gateway.auth.require_scopes` before touching the store.

More specific routes win: the app may register e.g. ``DELETE /fhir/Task/<id>`` (job
cancellation), ``GET /fhir/metadata`` or ``GET /fhir/CodeSystem/<id>``. Werkzeug's router tries
static path segments before variable ones at each level, so a rule with ``Task`` (or
``metadata``) spelled out beats ``<type>`` here, whatever the registration order; and when such
a rule exists only for one method (``DELETE``), other methods (``GET /fhir/Task/<id>``) still
fall through to these generic views. Keep the generic ``string`` converter here (no custom
converter that could outrank static segments).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, request

from gateway import auth
from gateway.store.base import FhirStore, etag, is_resource_type
from gateway.store.search_params import drop_unknown_parameters
from netliver.fhir.models import parse_resource
from netliver.fhir.outcome import FhirError
from netliver.web import fhir_response, read_fhir_body, read_json_body

__all__ = ["create_fhir_rest_blueprint"]

_FORM = "application/x-www-form-urlencoded"


def _known_type(resource_type: str) -> str:
    if not is_resource_type(resource_type):
        raise FhirError(404, "not-found", f"unknown resource type {resource_type!r}")
    return resource_type


def _http_date(instant: str) -> str | None:
    try:
        moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return format_datetime(moment, usegmt=True)


def _version_headers(resource: Mapping[str, Any]) -> dict[str, str]:
    meta = resource.get("meta") or {}
    headers: dict[str, str] = {}
    if meta.get("versionId"):
        headers["ETag"] = etag(str(meta["versionId"]))
    if meta.get("lastUpdated"):
        modified = _http_date(str(meta["lastUpdated"]))
        if modified:
            headers["Last-Modified"] = modified
    return headers


def _lenient() -> bool:
    prefer = request.headers.get("Prefer", "")
    return any(part.strip().replace(" ", "") == "handling=lenient" for part in prefer.split(","))


def _bundle_types(bundle: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(types read, types written) by the entries of a transaction or batch Bundle."""
    reads: set[str] = set()
    writes: set[str] = set()
    for entry in bundle.get("entry") or []:
        if not isinstance(entry, Mapping):
            continue
        raw_request = entry.get("request")
        req: Mapping[str, Any] = raw_request if isinstance(raw_request, Mapping) else {}
        method = str(req.get("method", "")).upper()
        url = str(req.get("url", ""))
        path = urlsplit(url).path if url.startswith("http") else url.split("?", 1)[0]
        segments = [s for s in path.split("/") if s]
        names = [s for s in segments if is_resource_type(s)]
        rtype = names[0] if names else None
        resource = entry.get("resource")
        if isinstance(resource, Mapping) and isinstance(resource.get("resourceType"), str):
            rtype = rtype or resource["resourceType"]
            if method in ("POST", "PUT"):
                writes.add(resource["resourceType"])
        if rtype:
            (reads if method == "GET" else writes).add(rtype)
    return sorted(reads), sorted(writes)


def _read_location(store: FhirStore, location: str) -> dict[str, Any]:
    """The resource a transaction-response ``location`` (``[base/]Type/id[/_history/v]``) names."""
    parts = [p for p in urlsplit(location).path.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        raise FhirError(502, "exception", f"the store answered no resource and no location ({location!r})")
    return store.read(parts[-2], parts[-1])


def create_fhir_rest_blueprint(get_store: Callable[[], FhirStore], base_url_of: Callable[[], str]) -> Blueprint:
    """The ``fhir_rest`` blueprint. ``base_url_of()`` gives the base URL callers see: the FHIR
    base (``https://host/fhir``) or the site root (``https://host``, ``/fhir`` is appended).

    Longer than 80 lines because it is the nine REST interactions' views (each under 25 lines)
    side by side, closed over the same store and base URL; the rules they share are the module
    functions above."""
    bp = Blueprint("fhir_rest", __name__, url_prefix="/fhir")

    def fhir_base() -> str:
        base = base_url_of().rstrip("/")
        return base if base.endswith("/fhir") else f"{base}/fhir"

    def search(resource_type: str, params: Iterable[tuple[str, str]]) -> Response:
        rtype = _known_type(resource_type)
        auth.require_scopes(read=[rtype])
        wanted = list(params)
        if _lenient():
            wanted = drop_unknown_parameters(rtype, wanted)
        return fhir_response(get_store().search(rtype, wanted, fhir_base()))

    @bp.get("/<resource_type>/<resource_id>")
    def read(resource_type: str, resource_id: str) -> Response:
        rtype = _known_type(resource_type)
        auth.require_scopes(read=[rtype])
        resource = get_store().read(rtype, resource_id)
        return fhir_response(resource, 200, _version_headers(resource))

    @bp.get("/<resource_type>/<resource_id>/_history/<version_id>")
    def vread(resource_type: str, resource_id: str, version_id: str) -> Response:
        rtype = _known_type(resource_type)
        auth.require_scopes(read=[rtype])
        resource = get_store().vread(rtype, resource_id, version_id)
        return fhir_response(resource, 200, _version_headers(resource))

    @bp.get("/<resource_type>/<resource_id>/_history")
    def history(resource_type: str, resource_id: str) -> Response:
        rtype = _known_type(resource_type)
        auth.require_scopes(read=[rtype])
        bundle = get_store().history(rtype, resource_id)
        full_url = f"{fhir_base()}/{rtype}/{resource_id}"  # every entry is this one resource
        for entry in bundle.get("entry") or []:
            if isinstance(entry, dict):
                entry["fullUrl"] = full_url
        bundle.pop("link", None)  # an upstream server's paging links would bypass the gateway
        return fhir_response(bundle)

    @bp.get("/<resource_type>")
    def search_get(resource_type: str) -> Response:
        return search(resource_type, request.args.items(multi=True))

    @bp.post("/<resource_type>/_search")
    def search_post(resource_type: str) -> Response:
        _known_type(resource_type)
        if (request.mimetype or "").lower() != _FORM:
            raise FhirError(415, "not-supported", f"POST _search needs a {_FORM} body, not "
                            f"{request.mimetype or 'none'!r}")
        return search(resource_type, [*request.args.items(multi=True), *request.form.items(multi=True)])

    @bp.put("/<resource_type>/<resource_id>")
    def update(resource_type: str, resource_id: str) -> Response:
        rtype = _known_type(resource_type)
        auth.require_scopes(write=[rtype])
        body = read_fhir_body()
        if body.get("resourceType") != rtype:
            raise FhirError(400, "invalid", f"the URL names {rtype} but the body is a {body.get('resourceType')}",
                            "resourceType")
        if body.get("id") != resource_id:
            raise FhirError(400, "invalid", f"the body id {body.get('id')!r} must equal the URL id "
                            f"{resource_id!r}", f"{rtype}.id")
        stored, created = get_store().put(body, if_match=request.headers.get("If-Match"))
        headers = _version_headers(stored)
        if created:
            headers["Location"] = f"{fhir_base()}/{rtype}/{stored['id']}/_history/{stored['meta']['versionId']}"
        return fhir_response(stored, 201 if created else 200, headers)

    @bp.post("/<resource_type>")
    def create(resource_type: str) -> Response:
        rtype = _known_type(resource_type)
        if_none_exist = request.headers.get("If-None-Exist")
        auth.require_scopes(read=[rtype] if if_none_exist else [], write=[rtype])
        body = read_fhir_body()
        if body.get("resourceType") != rtype:
            raise FhirError(400, "invalid", f"the URL names {rtype} but the body is a {body.get('resourceType')}",
                            "resourceType")
        store = get_store()
        if if_none_exist:
            answer = store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [{
                "resource": body, "request": {"method": "POST", "url": rtype, "ifNoneExist": if_none_exist}}]},
                fhir_base())
            entry = answer["entry"][0]
            response = entry.get("response") or {}
            stored = entry.get("resource") or _read_location(store, str(response.get("location", "")))
            created = str(response.get("status", "")).startswith("201")
        else:
            stored, created = store.create(body), True
        headers = _version_headers(stored)
        headers["Location"] = f"{fhir_base()}/{rtype}/{stored['id']}/_history/{stored['meta']['versionId']}"
        return fhir_response(stored, 201 if created else 200, headers)

    @bp.delete("/<resource_type>/<resource_id>")
    def remove(resource_type: str, resource_id: str) -> Response:
        rtype = _known_type(resource_type)
        auth.require_scopes(write=[rtype])
        get_store().delete(rtype, resource_id)
        return fhir_response({"resourceType": "OperationOutcome", "issue": [{
            "severity": "information", "code": "informational",
            "diagnostics": f"{rtype}/{resource_id} is deleted"}]})

    @bp.post("/", strict_slashes=False)
    def transaction() -> Response:
        # Entries are validated one by one by the store (a batch entry fails alone; a
        # transaction names the failing entry), so the Bundle itself is only checked for type.
        bundle = read_json_body()
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            parse_resource(bundle, "Bundle")
            raise FhirError(400, "invalid", "a transaction or batch Bundle was expected", "resourceType")
        reads, writes = _bundle_types(bundle)
        auth.require_scopes(read=reads, write=writes)
        return fhir_response(get_store().transaction(bundle, fhir_base()))

    return bp
