"""The FHIR REST API of the gateway (FHIR R4 §3.1.0): read, vread, history, search, update,
create, delete and transaction/batch on the configured :class:`~gateway.store.base.FhirStore`.

Routes (blueprint ``fhir_rest``, prefix ``/fhir``)::

    GET    /fhir/<type>/<id>                  read
    GET    /fhir/<type>/<id>/_history/<vid>   vread
    GET    /fhir/<type>/<id>/_history         history
    GET    /fhir/<type>                       search (query string)
    POST   /fhir/<type>/_search               search (form-encoded body)
    PUT    /fhir/<type>/<id>                  update / create by id (If-Match, If-None-Match: *)
    PUT    /fhir/<type>?<search>              conditional update
    PATCH  /fhir/<type>/<id>                  JSON Patch (If-Match honoured)
    POST   /fhir/<type>[?<search>]            create; conditional with If-None-Exist or a query
    DELETE /fhir/<type>/<id>                  delete
    DELETE /fhir/<type>?<search>              conditional delete (one match at most)
    GET    /fhir/<type>/_history, /fhir/_history   type and system history (_count, _since)
    POST   /fhir/<type>/$validate             validate (structure, required bindings, invariants)
    POST   /fhir  (or /fhir/)                 transaction or batch Bundle

Writes answer as ``Prefer: return=minimal|representation|OperationOutcome`` asks. Only FHIR JSON
is served: ``_format`` or ``Accept`` asking for anything else is a 406 on every ``/fhir`` path.
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
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, request

from gateway import auth
from gateway.binary import is_binary_read
from gateway.compartment import confined_search, in_compartment, outside, visible_entries
from gateway.fhir_interactions import apply_json_patch, format_refusal, prefer_return
from gateway.store.base import FhirStore, etag, is_resource_type, parse_etag
from gateway.store.search_params import drop_unknown_parameters
from netliver.fhir.models import parse_resource
from netliver.fhir.outcome import FhirError, Issue, operation_outcome
from netliver.fhir.validation import resource_issues
from netliver.web import fhir_response, read_fhir_body, read_json_body

__all__ = ["create_fhir_rest_blueprint"]

_FORM = "application/x-www-form-urlencoded"
_JSON_PATCH = "application/json-patch+json"


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


def validation_outcome(body: Any, resource_type: str) -> dict[str, Any]:
    """The OperationOutcome of ``$validate`` on ``body`` (a resource or Parameters{resource})."""
    resource = body
    if isinstance(body, Mapping) and body.get("resourceType") == "Parameters" and resource_type != "Parameters":
        found = [p.get("resource") for p in body.get("parameter") or []
                 if isinstance(p, Mapping) and p.get("name") == "resource"]
        if len(found) != 1:
            raise FhirError(400, "required", "$validate needs exactly one 'resource' parameter",
                            "Parameters.parameter")
        resource = found[0]
    if not isinstance(resource, Mapping) or resource.get("resourceType") != resource_type:
        raise FhirError(400, "invalid", f"$validate on {resource_type} needs a {resource_type}", "resourceType")
    try:
        issues = resource_issues(resource)
    except FhirError as err:
        issues = err.issues
    if not issues:
        return {"resourceType": "OperationOutcome", "issue": [
            {"severity": "information", "code": "informational", "diagnostics": "no issues found"}]}
    return operation_outcome(issues)


def _exists(store: FhirStore, rtype: str, rid: str) -> bool:
    try:
        store.read(rtype, rid)
    except FhirError as err:
        if err.status in (404, 410):
            return False
        raise
    return True


def _history_params() -> list[tuple[str, str]]:
    """``_count`` and ``_since`` of a type or system history (others are a 400)."""
    params = [(k, v) for k, v in request.args.items(multi=True) if k not in ("_format", "_pretty")]
    for name, _ in params:
        if name not in ("_count", "_since"):
            raise FhirError(400, "not-supported", f"history takes _count and _since, not {name}", name)
    return params


def _read_location(store: FhirStore, location: str) -> dict[str, Any]:
    """The resource a transaction-response ``location`` (``[base/]Type/id[/_history/v]``) names."""
    parts = [p for p in urlsplit(location).path.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        raise FhirError(502, "exception", f"the store answered no resource and no location ({location!r})")
    return store.read(parts[-2], parts[-1])


def _refuse_unserved_formats() -> None:
    """406 on every ``/fhir`` path whose ``_format`` or ``Accept`` asks for other than FHIR JSON."""
    if is_binary_read(request.method, request.path):
        return  # a Binary is also served as its own content type (gateway.binary)
    if request.path == "/fhir" or request.path.startswith("/fhir/"):
        refusal = format_refusal(request.args.get("_format"), request.headers.get("Accept"))
        if refusal is not None:
            raise refusal


def _readable_includes(bundle: dict[str, Any]) -> dict[str, Any]:
    """``bundle`` without the ``_include``d/``_revinclude``d resources of types the caller's
    scopes do not let it read (SMART App Launch 2.0 §Scopes: the scopes bound every resource
    returned, not only the searched type); an OperationOutcome entry says what was withheld."""
    entries = bundle.get("entry") or []
    included = {e["resource"]["resourceType"] for e in entries
                if (e.get("search") or {}).get("mode") == "include" and isinstance(e.get("resource"), dict)}
    hidden = included - auth.readable_types(included)
    if not hidden:
        return bundle
    kept = [e for e in entries if not ((e.get("search") or {}).get("mode") == "include"
                                       and e["resource"]["resourceType"] in hidden)]
    note = {"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "suppressed",
        "diagnostics": f"included {', '.join(sorted(hidden))} resources were left out: the token's scopes "
                       "do not allow reading them"}]}
    return {**bundle, "entry": [*kept, {"resource": note, "search": {"mode": "outcome"}}]}


@dataclass(frozen=True)
class _Rest:
    """What the views share: the store, the base URL callers see, and the answers built on them."""

    get_store: Callable[[], FhirStore]
    base_url_of: Callable[[], str]

    def fhir_base(self) -> str:
        base = self.base_url_of().rstrip("/")
        return base if base.endswith("/fhir") else f"{base}/fhir"

    def search(self, resource_type: str, params: Iterable[tuple[str, str]]) -> Response:
        rtype = _known_type(resource_type)
        patient = auth.require_scopes(read=[rtype], compartment=True)
        wanted = list(params)
        if _lenient():
            wanted = drop_unknown_parameters(rtype, wanted)
        if patient is None:
            return fhir_response(_readable_includes(self.get_store().search(rtype, wanted, self.fhir_base())))
        found = self.get_store().search(rtype, confined_search(rtype, wanted, patient), self.fhir_base())
        return fhir_response(_readable_includes(visible_entries(found, patient)))

    @staticmethod
    def patients(resource: dict[str, Any], patient: str | None) -> dict[str, Any]:
        """``resource``, unless the caller is confined to another patient's compartment (403)."""
        if patient is not None and not in_compartment(resource, patient):
            raise outside(f"{resource.get('resourceType')}/{resource.get('id')} is not in the compartment "
                          f"of Patient/{patient}")
        return resource

    def current_of(self, rtype: str, resource_id: str, patient: str | None) -> None:
        """403 when a confined caller would change a resource of another patient."""
        if patient is not None and _exists(self.get_store(), rtype, resource_id):
            self.patients(self.get_store().read(rtype, resource_id), patient)

    def written(self, stored: dict[str, Any], created: bool) -> Response:
        """A write's answer as ``Prefer: return=…`` asks (the resource by default)."""
        headers = _version_headers(stored)
        rtype = stored["resourceType"]
        headers["Location"] = f"{self.fhir_base()}/{rtype}/{stored['id']}/_history/{stored['meta']['versionId']}"
        status = 201 if created else 200
        wanted = prefer_return(request.headers.get("Prefer"))
        if wanted == "minimal":
            return Response(status=status, headers=headers)
        if wanted == "OperationOutcome":
            return fhir_response(operation_outcome([Issue(
                "informational", f"{rtype}/{stored['id']} {'created' if created else 'updated'}",
                severity="information")]), status, headers)
        return fhir_response(stored, status, headers)

    @staticmethod
    def checked_body(rtype: str, resource_id: str | None) -> dict[str, Any]:
        body = read_fhir_body()
        if body.get("resourceType") != rtype:
            raise FhirError(400, "invalid", f"the URL names {rtype} but the body is a {body.get('resourceType')}",
                            "resourceType")
        if resource_id is not None and body.get("id") != resource_id:
            raise FhirError(400, "invalid", f"the body id {body.get('id')!r} must equal the URL id "
                            f"{resource_id!r}", f"{rtype}.id")
        return body

    def matches(self, rtype: str, what: str) -> list[dict[str, Any]]:
        """The resources a conditional interaction's query selects (at most two are read)."""
        params = [(k, v) for k, v in request.args.items(multi=True) if k not in ("_format", "_pretty")]
        if not params:
            raise FhirError(400, "required", f"a conditional {what} needs search parameters", "url")
        found = self.get_store().search(rtype, [*params, ("_count", "2")], self.fhir_base())
        return [e["resource"] for e in found.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]


def create_fhir_rest_blueprint(get_store: Callable[[], FhirStore], base_url_of: Callable[[], str]) -> Blueprint:
    """The ``fhir_rest`` blueprint. ``base_url_of()`` gives the base URL callers see: the FHIR
    base (``https://host/fhir``) or the site root (``https://host``, ``/fhir`` is appended).

    The views are registered in four groups (reads and searches, writes by id, conditional
    writes, Bundles and ``$validate``), all on this one blueprint; the answers they share are
    :class:`_Rest`'s."""
    bp = Blueprint("fhir_rest", __name__, url_prefix="/fhir")
    bp.before_app_request(_refuse_unserved_formats)
    rest = _Rest(get_store, base_url_of)
    _add_reads(bp, rest)
    _add_writes(bp, rest)
    _add_conditional_writes(bp, rest)
    _add_bundle_and_validate(bp, rest)
    return bp


def _add_reads(bp: Blueprint, rest: _Rest) -> None:
    """read, vread, instance / type / system history and search (GET and POST ``_search``)."""

    @bp.get("/<resource_type>/<resource_id>")
    def read(resource_type: str, resource_id: str) -> Response:
        rtype = _known_type(resource_type)
        patient = auth.require_scopes(read=[rtype], compartment=True)
        resource = rest.patients(rest.get_store().read(rtype, resource_id), patient)
        return fhir_response(resource, 200, _version_headers(resource))

    @bp.get("/<resource_type>/<resource_id>/_history/<version_id>")
    def vread(resource_type: str, resource_id: str, version_id: str) -> Response:
        rtype = _known_type(resource_type)
        patient = auth.require_scopes(read=[rtype], compartment=True)
        resource = rest.patients(rest.get_store().vread(rtype, resource_id, version_id), patient)
        return fhir_response(resource, 200, _version_headers(resource))

    @bp.get("/<resource_type>/<resource_id>/_history")
    def history(resource_type: str, resource_id: str) -> Response:
        rtype = _known_type(resource_type)
        patient = auth.require_scopes(read=[rtype], compartment=True)
        if patient is not None:
            rest.patients(rest.get_store().read(rtype, resource_id), patient)  # a deleted resource is not shown (410)
        bundle = rest.get_store().history(rtype, resource_id)
        if patient is not None:  # earlier versions may have been of another patient
            bundle = visible_entries(bundle, patient)
        full_url = f"{rest.fhir_base()}/{rtype}/{resource_id}"  # every entry is this one resource
        for entry in bundle.get("entry") or []:
            if isinstance(entry, dict):
                entry["fullUrl"] = full_url
        bundle.pop("link", None)  # an upstream server's paging links would bypass the gateway
        return fhir_response(bundle)

    @bp.get("/<resource_type>")
    def search_get(resource_type: str) -> Response:
        return rest.search(resource_type, request.args.items(multi=True))

    @bp.post("/<resource_type>/_search")
    def search_post(resource_type: str) -> Response:
        _known_type(resource_type)
        if (request.mimetype or "").lower() != _FORM:
            raise FhirError(415, "not-supported", f"POST _search needs a {_FORM} body, not "
                            f"{request.mimetype or 'none'!r}")
        return rest.search(resource_type, [*request.args.items(multi=True), *request.form.items(multi=True)])

    @bp.get("/<resource_type>/_history")
    def type_history(resource_type: str) -> Response:
        rtype = _known_type(resource_type)
        auth.require_scopes(read=[rtype])
        return fhir_response(rest.get_store().history_all(rtype, _history_params(), rest.fhir_base()))

    @bp.get("/_history")
    def system_history() -> Response:
        auth.require_scopes(read=["*"])
        return fhir_response(rest.get_store().history_all(None, _history_params(), rest.fhir_base()))


def _add_writes(bp: Blueprint, rest: _Rest) -> None:
    """update (or create by id), JSON Patch, create (plain or conditional) and delete."""

    @bp.put("/<resource_type>/<resource_id>")
    def update(resource_type: str, resource_id: str) -> Response:
        rtype = _known_type(resource_type)
        patient = auth.require_scopes(write=[rtype], compartment=True)
        body = rest.patients(rest.checked_body(rtype, resource_id), patient)
        rest.current_of(rtype, resource_id, patient)
        store = rest.get_store()
        if request.headers.get("If-None-Match", "").strip() == "*" and _exists(store, rtype, resource_id):
            raise FhirError(412, "duplicate", f"{rtype}/{resource_id} exists (If-None-Match: *)", "If-None-Match")
        stored, created = store.put(body, if_match=request.headers.get("If-Match"))
        return rest.written(stored, created)

    @bp.patch("/<resource_type>/<resource_id>")
    def patch(resource_type: str, resource_id: str) -> Response:
        """JSON Patch (``application/json-patch+json``) of the current version, written only if
        that version is still current (so a concurrent update is never lost)."""
        rtype = _known_type(resource_type)
        patient = auth.require_scopes(read=[rtype], write=[rtype], compartment=True)
        if (request.mimetype or "").lower() != _JSON_PATCH:
            raise FhirError(415, "not-supported", f"PATCH needs a {_JSON_PATCH} body, not "
                            f"{request.mimetype or 'none'!r}")
        store = rest.get_store()
        current = rest.patients(store.read(rtype, resource_id), patient)
        version = str(current["meta"]["versionId"])
        wanted = request.headers.get("If-Match")
        if wanted and parse_etag(wanted) != version:
            raise FhirError(412, "conflict", f"If-Match {wanted} is not the current version {version}", "If-Match")
        patched = rest.patients(apply_json_patch(current, request.get_json(silent=True)), patient)
        stored, _ = store.put(patched, if_match=etag(version))
        return rest.written(stored, False)

    @bp.post("/<resource_type>")
    def create(resource_type: str) -> Response:
        rtype = _known_type(resource_type)
        if_none_exist = request.headers.get("If-None-Exist")
        query = [(k, v) for k, v in request.args.items(multi=True) if k not in ("_format", "_pretty")]
        if query and if_none_exist:
            raise FhirError(400, "invalid", "give the conditional create's criteria once: in If-None-Exist or "
                            "in the query string", "If-None-Exist")
        if query:  # POST Type?criteria is a conditional create, never a plain one
            if_none_exist = urlencode(query)
        # a conditional create's query could probe other patients: not with patient/ scopes
        patient = auth.require_scopes(read=[rtype] if if_none_exist else [], write=[rtype],
                                      compartment=not if_none_exist)
        body = rest.patients(rest.checked_body(rtype, None), patient)
        store = rest.get_store()
        if if_none_exist:
            answer = store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [{
                "resource": body, "request": {"method": "POST", "url": rtype, "ifNoneExist": if_none_exist}}]},
                rest.fhir_base())
            entry = answer["entry"][0]
            response = entry.get("response") or {}
            stored = entry.get("resource") or _read_location(store, str(response.get("location", "")))
            created = str(response.get("status", "")).startswith("201")
        else:
            stored, created = store.create(body), True
        return rest.written(stored, created)

    @bp.delete("/<resource_type>/<resource_id>")
    def remove(resource_type: str, resource_id: str) -> Response:
        rtype = _known_type(resource_type)
        rest.current_of(rtype, resource_id, auth.require_scopes(write=[rtype], compartment=True))
        rest.get_store().delete(rtype, resource_id)
        return fhir_response({"resourceType": "OperationOutcome", "issue": [{
            "severity": "information", "code": "informational",
            "diagnostics": f"{rtype}/{resource_id} is deleted"}]})


def _add_conditional_writes(bp: Blueprint, rest: _Rest) -> None:
    """Conditional update and delete: the query selects the resource (one match at most)."""

    @bp.put("/<resource_type>")
    def conditional_update(resource_type: str) -> Response:
        rtype = _known_type(resource_type)
        auth.require_scopes(read=[rtype], write=[rtype])
        body = rest.checked_body(rtype, None)
        found = rest.matches(rtype, "update")
        if len(found) > 1:
            raise FhirError(412, "multiple-matches", "the conditional update matches several resources", "url")
        store = rest.get_store()
        if found:
            if body.get("id") not in (None, found[0]["id"]):
                raise FhirError(400, "invalid", f"the body id {body['id']!r} is not the matching resource's "
                                f"{found[0]['id']!r}", f"{rtype}.id")
            stored, created = store.put({**body, "id": found[0]["id"]}, if_match=request.headers.get("If-Match"))
            return rest.written(stored, created)
        if body.get("id"):
            return rest.written(*store.put(body))
        return rest.written(store.create(body), True)

    @bp.delete("/<resource_type>")
    def conditional_delete(resource_type: str) -> Response:
        rtype = _known_type(resource_type)
        auth.require_scopes(read=[rtype], write=[rtype])
        found = rest.matches(rtype, "delete")
        if len(found) > 1:
            raise FhirError(412, "multiple-matches", "the conditional delete matches several resources", "url")
        for resource in found:
            rest.get_store().delete(rtype, resource["id"])
        return fhir_response(operation_outcome([Issue(
            "informational", f"{len(found)} {rtype} deleted", severity="information")]))


def _add_bundle_and_validate(bp: Blueprint, rest: _Rest) -> None:
    """``$validate`` and the transaction / batch Bundle at the base."""

    @bp.post("/<resource_type>/$validate")
    def validate(resource_type: str) -> Response:
        """``$validate`` (FHIR R4 §3.1.0.8 / Resource-validate): the resource as the body or as
        the ``resource`` parameter of a Parameters body; 200 with every issue found."""
        rtype = _known_type(resource_type)
        auth.require_scopes(read=[rtype])
        return fhir_response(validation_outcome(read_json_body(), rtype))

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
        return fhir_response(rest.get_store().transaction(bundle, rest.fhir_base()))
