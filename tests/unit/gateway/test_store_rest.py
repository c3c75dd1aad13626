"""The FHIR REST blueprint through a Flask test client, over the embedded store (SQLite) and
over the upstream store (talking to a second app serving the same blueprint): callers must see
the same answers in both modes."""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, current_app
from flask.testing import FlaskClient

from gateway import auth
from gateway.fhir_rest import create_fhir_rest_blueprint
from gateway.store.base import FhirStore
from gateway.store.sql import SqlStore
from gateway.store.upstream import UpstreamStore
from netliver.fhir.outcome import FhirError
from netliver.settings import Settings
from netliver.web import create_base_app, fhir_response
from tests.unit.gateway.test_store_behaviour import ServedStore

FHIR_JSON = "application/fhir+json"
#: What ``base_url_of`` answers in these tests (the public root; the blueprint appends /fhir).
PUBLIC_ROOT = "https://gateway.example"
BASE = f"{PUBLIC_ROOT}/fhir"
GATEWAY_APP = "gateway-test"


class ScopeRecorder:
    """Stands in for ``gateway.auth.require_scopes``: records calls, refuses listed types."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []
        self.refuse: set[str] = set()

    def __call__(self, read: Any = (), write: Any = (), compartment: bool = False) -> None:
        reads, writes = sorted(read), sorted(write)
        if current_app.name == GATEWAY_APP:  # not the upstream server's own checks
            self.calls.append((reads, writes))
        if self.refuse & (set(reads) | set(writes)):
            raise FhirError(403, "forbidden", "insufficient scope")


@pytest.fixture
def scopes(monkeypatch: pytest.MonkeyPatch) -> ScopeRecorder:
    recorder = ScopeRecorder()
    monkeypatch.setattr(auth, "require_scopes", recorder)
    return recorder


@pytest.fixture(params=["embedded", "upstream"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FhirStore]:
    """The gateway's store: embedded SQLite, or an upstream FHIR server (a second Flask app)."""
    sql = SqlStore(f"sqlite:///{tmp_path}/rest.db")
    if request.param == "embedded":
        yield sql
    else:
        served = ServedStore(sql)
        yield UpstreamStore(served.base_url, timeout_s=10)
        served.stop()
    sql.close()


@pytest.fixture
def app(store: FhirStore, scopes: ScopeRecorder) -> Flask:
    application = create_base_app(GATEWAY_APP, "0", Settings(auth_mode="off"))
    application.register_blueprint(create_fhir_rest_blueprint(lambda: store, lambda: PUBLIC_ROOT))
    return application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def observation(oid: str, value: float = 1.0, patient: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
            "subject": {"reference": f"Patient/{patient}"}, "valueQuantity": {"value": value, "unit": "mg/dL"}}


def put(client: FlaskClient, resource: dict[str, Any], **headers: str) -> Any:
    return client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource,
                      headers={"Content-Type": FHIR_JSON, **headers})


def test_put_creates_then_updates_with_version_headers(client: FlaskClient) -> None:
    created = put(client, observation("o1"))
    assert created.status_code == 201
    assert created.mimetype == FHIR_JSON
    assert created.headers["ETag"] == 'W/"1"'
    assert created.headers["Location"] == f"{BASE}/Observation/o1/_history/1"
    assert parsedate_to_datetime(created.headers["Last-Modified"]).year >= 2026
    same = put(client, observation("o1"))
    assert same.status_code == 200 and same.headers["ETag"] == 'W/"1"'
    changed = put(client, observation("o1", 2.0))
    assert changed.status_code == 200 and changed.headers["ETag"] == 'W/"2"'
    stale = put(client, observation("o1", 3.0), **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412


@pytest.mark.parametrize(("url", "body", "status"), [
    ("/fhir/Observation/o1", observation("other"), 400),  # id differs from the URL
    ("/fhir/Observation/o1", {k: v for k, v in observation("o1").items() if k != "id"}, 400),
    ("/fhir/Patient/o1", observation("o1"), 400),  # type differs from the URL
    ("/fhir/Observation/o1", {"resourceType": "Observation", "id": "o1", "status": 3}, 400),
    ("/fhir/Frobnicate/o1", observation("o1"), 404),  # not an R4 type
    ("/fhir/Coding/o1", observation("o1"), 404),  # a data type, not a resource
])
def test_put_refusals(client: FlaskClient, url: str, body: dict[str, Any], status: int) -> None:
    resp = client.put(url, json=body, headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == status
    assert resp.json["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Observation/o1").status_code == 404


def test_put_needs_a_fhir_content_type(client: FlaskClient) -> None:
    resp = client.put("/fhir/Observation/o1", data="{}", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 415


def test_read_vread_history_and_delete(client: FlaskClient) -> None:
    put(client, observation("o1", 1.0))
    put(client, observation("o1", 2.0))
    read = client.get("/fhir/Observation/o1")
    assert read.status_code == 200 and read.headers["ETag"] == 'W/"2"'
    assert read.json["valueQuantity"]["value"] == 2.0
    v1 = client.get("/fhir/Observation/o1/_history/1")
    assert v1.status_code == 200 and v1.json["valueQuantity"]["value"] == 1.0 and v1.headers["ETag"] == 'W/"1"'
    history = client.get("/fhir/Observation/o1/_history").json
    assert [e["fullUrl"] for e in history["entry"]] == [f"{BASE}/Observation/o1"] * 2
    assert client.delete("/fhir/Observation/o1").status_code == 200
    assert client.delete("/fhir/Observation/o1").status_code == 200  # idempotent
    gone = client.get("/fhir/Observation/o1")
    assert gone.status_code == 410 and gone.json["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Observation/unknown").status_code == 404
    assert client.get("/fhir/Frobnicate/o1").status_code == 404


def test_search_get_and_post(client: FlaskClient) -> None:
    put(client, observation("o1", patient="p1"))
    put(client, observation("o2", patient="p2"))
    got = client.get("/fhir/Observation?patient=Patient/p1")
    assert got.status_code == 200 and got.mimetype == FHIR_JSON
    assert got.json["total"] == 1 and got.json["entry"][0]["fullUrl"] == f"{BASE}/Observation/o1"
    posted = client.post("/fhir/Observation/_search", data={"patient": "p2"})
    assert posted.json["total"] == 1 and posted.json["entry"][0]["resource"]["id"] == "o2"
    both = client.get("/fhir/Observation?subject=Patient/p1,Patient/p2&_count=1")
    assert both.json["total"] == 2 and len(both.json["entry"]) == 1
    assert any(link["relation"] == "next" for link in both.json["link"])
    json_search = client.post("/fhir/Observation/_search", json={"patient": "p2"})
    assert json_search.status_code == 415


def test_unknown_search_parameter_is_strict_unless_lenient(client: FlaskClient) -> None:
    put(client, observation("o1"))
    strict = client.get("/fhir/Observation?colour=red&patient=p1")
    assert strict.status_code == 400
    assert strict.json["issue"][0]["expression"] == ["colour"]
    lenient = client.get("/fhir/Observation?colour=red&patient=p1", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200 and lenient.json["total"] == 1
    self_link = next(link["url"] for link in lenient.json["link"] if link["relation"] == "self")
    assert "colour" not in self_link


def test_create_and_conditional_create(client: FlaskClient) -> None:
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}]}
    first = client.post("/fhir/Patient", json=body, headers={"Content-Type": FHIR_JSON})
    assert first.status_code == 201
    assert first.headers["Location"].startswith(f"{BASE}/Patient/")
    assert first.headers["ETag"] == 'W/"1"'
    plain_again = client.post("/fhir/Patient", json=body, headers={"Content-Type": FHIR_JSON})
    assert plain_again.status_code == 201 and plain_again.json["id"] != first.json["id"]
    conditional = {"Content-Type": FHIR_JSON, "If-None-Exist": "identifier=urn:mrn|8"}
    made = client.post("/fhir/Patient", json=body | {"identifier": [{"system": "urn:mrn", "value": "8"}]},
                       headers=conditional)
    found = client.post("/fhir/Patient", json=body | {"identifier": [{"system": "urn:mrn", "value": "8"}]},
                        headers=conditional)
    assert (made.status_code, found.status_code) == (201, 200)
    assert made.json["id"] == found.json["id"]
    wrong_type = client.post("/fhir/Patient", json=observation("x"), headers={"Content-Type": FHIR_JSON})
    assert wrong_type.status_code == 400


@pytest.mark.parametrize("path", ["/fhir", "/fhir/"])
def test_transaction_endpoint(client: FlaskClient, path: str) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("t1"), "request": {"method": "PUT", "url": "Observation/t1"}}]}
    resp = client.post(path, json=bundle, headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 200
    assert resp.json["type"] == "transaction-response"
    assert resp.json["entry"][0]["response"]["status"].startswith("201")
    assert client.get("/fhir/Observation/t1").status_code == 200


def test_transaction_endpoint_refusals(client: FlaskClient) -> None:
    patient = client.post("/fhir", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR_JSON})
    assert patient.status_code == 422
    collection = client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"},
                             headers={"Content-Type": FHIR_JSON})
    assert collection.status_code == 422
    garbage = client.post("/fhir", data="{not json", headers={"Content-Type": FHIR_JSON})
    assert garbage.status_code == 400


def test_every_view_asks_for_the_scopes_of_its_types(client: FlaskClient, scopes: ScopeRecorder) -> None:
    put(client, observation("o1"))
    client.get("/fhir/Observation/o1")
    client.get("/fhir/Observation?patient=p1")
    client.get("/fhir/Observation/o1/_history")
    client.get("/fhir/Observation/o1/_history/1")
    client.delete("/fhir/Observation/o1")
    client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p1"}},
        {"request": {"method": "GET", "url": "Condition?patient=p1"}}]}, headers={"Content-Type": FHIR_JSON})
    assert scopes.calls == [
        ([], ["Observation"]), (["Observation"], []), (["Observation"], []), (["Observation"], []),
        (["Observation"], []), ([], ["Observation"]), (["Condition"], ["Patient"])]


def test_a_refused_scope_touches_nothing(client: FlaskClient, scopes: ScopeRecorder, store: FhirStore) -> None:
    scopes.refuse = {"Patient"}
    resp = put(client, {"resourceType": "Patient", "id": "p1"})
    assert resp.status_code == 403
    tx = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("o1"), "request": {"method": "PUT", "url": "Observation/o1"}},
        {"resource": {"resourceType": "Patient", "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p1"}}]},
        headers={"Content-Type": FHIR_JSON})
    assert tx.status_code == 403
    for rtype, rid in (("Patient", "p1"), ("Observation", "o1")):
        with pytest.raises(FhirError):
            store.read(rtype, rid)


@pytest.mark.parametrize("app_routes_first", [True, False])
def test_more_specific_app_routes_win(store: FhirStore, scopes: ScopeRecorder, app_routes_first: bool) -> None:
    application = create_base_app(GATEWAY_APP, "0", Settings(auth_mode="off"))

    def add_app_routes() -> None:
        application.add_url_rule("/fhir/Task/<task_id>", "cancel_task", methods=["DELETE"],
                                 view_func=lambda task_id: fhir_response({"cancelled": task_id}, 202))
        application.add_url_rule("/fhir/metadata", "metadata",
                                 view_func=lambda: fhir_response({"resourceType": "CapabilityStatement"}))

    if app_routes_first:
        add_app_routes()
    application.register_blueprint(create_fhir_rest_blueprint(lambda: store, lambda: BASE))
    if not app_routes_first:
        add_app_routes()
    client = application.test_client()
    task = {"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order"}
    assert put(client, task).status_code == 201
    cancelled = client.delete("/fhir/Task/t1")
    assert cancelled.status_code == 202 and cancelled.json == {"cancelled": "t1"}
    assert client.get("/fhir/Task/t1").status_code == 200  # GET still reaches the generic read
    assert client.get("/fhir/metadata").json["resourceType"] == "CapabilityStatement"
    assert client.delete("/fhir/Observation/x").status_code == 200  # generic delete elsewhere
