"""What the CapabilityStatement publishes is what the gateway does: every declared search
parameter (plain, ``:missing``, as ``_sort``), include, interaction and conformance resource is
exercised, on the embedded and the upstream store; every conformance resource is valid R4."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.fhir_rest import create_fhir_rest_blueprint
from gateway.metadata import CONFORMANCE_TYPES, create_metadata_blueprint
from gateway.store.base import FhirStore
from gateway.store.sql import SqlStore
from gateway.store.upstream import UpstreamStore
from netliver.fhir.validation import resource_issues
from netliver.settings import Settings
from netliver.web import create_base_app
from tests.unit.gateway.test_store_behaviour import ServedStore

FHIR_JSON = {"Content-Type": "application/fhir+json"}
_SAMPLES = {"token": "x", "date": "ge2020-01-01", "string": "a", "uri": "https://netliver.org/fhir/x"}


@pytest.fixture(params=["embedded", "upstream"], scope="module")
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    sql = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('walk')}/walk.db")
    served = ServedStore(sql) if request.param == "upstream" else None
    store: FhirStore = UpstreamStore(served.base_url, timeout_s=10) if served else sql
    app: Flask = create_base_app("walk", "0", Settings(auth_mode="off"))
    from gateway.auth import init_auth
    init_auth(app, Settings(auth_mode="off"))
    # The metadata views use only the caller-facing base and the auth mode of the dependencies.
    deps: Any = SimpleNamespace(fhir_base=lambda: "https://gw.example/fhir", settings=Settings(auth_mode="off"))
    app.register_blueprint(create_metadata_blueprint(deps))
    app.register_blueprint(create_fhir_rest_blueprint(lambda: store, lambda: "https://gw.example"))
    yield app.test_client()
    if served:
        served.stop()
    sql.close()


@pytest.fixture(scope="module")
def capability(client: FlaskClient) -> dict[str, Any]:
    answer = client.get("/fhir/metadata")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.get_json()
    return body


def _resources(capability: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in capability["rest"][0]["resource"] if r["type"] not in CONFORMANCE_TYPES]


def _value(param: dict[str, Any]) -> str:
    return "x" if param["type"] == "reference" else _SAMPLES[param["type"]]


def test_every_declared_search_parameter_answers(client: FlaskClient, capability: dict[str, Any]) -> None:
    failures = []
    declared = 0
    for entry in _resources(capability):
        rtype = entry["type"]
        for param in entry["searchParam"]:
            declared += 1
            name = param["name"]
            value = _value(param)
            for query in ({name: value}, {f"{name}:missing": "true"}, {"_sort": name}):
                answer = client.get(f"/fhir/{rtype}", query_string=query)
                if answer.status_code != 200:
                    failures.append((rtype, query, answer.status_code, answer.get_json()["issue"][0]["diagnostics"]))
    assert declared > 100
    assert failures == []


def test_every_declared_include_answers(client: FlaskClient, capability: dict[str, Any]) -> None:
    failures = []
    for entry in _resources(capability):
        for kind, values in (("_include", entry.get("searchInclude", [])),
                             ("_revinclude", entry.get("searchRevInclude", []))):
            for value in values:
                answer = client.get(f"/fhir/{entry['type']}", query_string={kind: value})
                if answer.status_code != 200:
                    failures.append((entry["type"], kind, value, answer.status_code))
    assert failures == []


_CODE = {"text": "walk"}
#: The smallest valid resource of each served type (its required elements).
_MINIMAL: dict[str, dict[str, Any]] = {
    "Patient": {}, "Observation": {"status": "final", "code": _CODE}, "Condition": {"subject": {"reference": "Patient/x"}},
    "Procedure": {"status": "completed", "subject": {"reference": "Patient/x"}},
    "MedicationStatement": {"status": "active", "medicationCodeableConcept": _CODE, "subject": {"reference": "Patient/x"}},
    "AllergyIntolerance": {"patient": {"reference": "Patient/x"}},
    "ImagingStudy": {"status": "available", "subject": {"reference": "Patient/x"}},
    "BodyStructure": {"patient": {"reference": "Patient/x"}},
    "DiagnosticReport": {"status": "final", "code": _CODE},
    "Provenance": {"target": [{"reference": "Patient/x"}], "recorded": "2026-01-01T00:00:00Z",
                   "agent": [{"who": {"display": "walk"}}]},
    "Task": {"status": "requested", "intent": "order"},
    "AuditEvent": {"type": {"code": "rest"}, "recorded": "2026-01-01T00:00:00Z",
                   "agent": [{"requestor": True, "who": {"display": "walk"}}], "source": {"observer": {"display": "walk"}}},
    "Endpoint": {"status": "active", "connectionType": {"code": "dicom-wado-rs"}, "payloadType": [_CODE],
                 "address": "https://pacs.example/dicom-web"},
}


def _exercise(client: FlaskClient, rtype: str, code: str) -> int:
    rid = f"walk-{rtype.lower()}"
    body = {"resourceType": rtype, "id": rid, **_MINIMAL[rtype]}
    calls = {
        "create": lambda: client.post(f"/fhir/{rtype}", json={"resourceType": rtype, **_MINIMAL[rtype]},
                                      headers=FHIR_JSON),
        "update": lambda: client.put(f"/fhir/{rtype}/{rid}", json=body, headers=FHIR_JSON),
        "read": lambda: client.get(f"/fhir/{rtype}/{rid}"),
        "vread": lambda: client.get(f"/fhir/{rtype}/{rid}/_history/1"),
        "patch": lambda: client.patch(f"/fhir/{rtype}/{rid}", json=[{"op": "add", "path": "/language", "value": "en"}],
                                      headers={"Content-Type": "application/json-patch+json"}),
        "history-instance": lambda: client.get(f"/fhir/{rtype}/{rid}/_history"),
        "history-type": lambda: client.get(f"/fhir/{rtype}/_history"),
        "search-type": lambda: client.get(f"/fhir/{rtype}"),
        "delete": lambda: client.delete(f"/fhir/{rtype}/{rid}"),
    }
    return int(calls[code]().status_code)


def test_every_declared_interaction_works(client: FlaskClient, capability: dict[str, Any]) -> None:
    order = ["update", "create", "read", "vread", "patch", "history-instance", "history-type", "search-type", "delete"]
    failures = []
    for entry in _resources(capability):
        declared = [i["code"] for i in entry["interaction"]]
        assert sorted(declared) == sorted(order)
        for code in order:
            status = _exercise(client, entry["type"], code)
            if status not in (200, 201):
                failures.append((entry["type"], code, status))
    assert failures == []
    system = {i["code"] for i in capability["rest"][0]["interaction"]}
    assert system == {"transaction", "batch", "history-system"}
    for kind in ("transaction", "batch"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [
            {"resource": {"resourceType": "Patient", "id": f"sys-{kind}"},
             "request": {"method": "PUT", "url": f"Patient/sys-{kind}"}}]}
        assert client.post("/fhir", json=bundle, headers=FHIR_JSON).status_code == 200
    assert client.get("/fhir/_history").status_code == 200


def test_conformance_resources_are_valid_readable_and_found_by_url(client: FlaskClient,
                                                                    capability: dict[str, Any]) -> None:
    assert [i for i in resource_issues(capability)] == []
    declared = {r["type"] for r in capability["rest"][0]["resource"]}
    assert set(CONFORMANCE_TYPES) <= declared
    canonicals = [op["definition"] for op in capability["rest"][0]["operation"]]
    for rtype in CONFORMANCE_TYPES:
        listed = client.get(f"/fhir/{rtype}").get_json()
        assert listed["total"] >= 1
        for entry in listed["entry"]:
            resource = entry["resource"]
            assert resource_issues(resource) == [], resource["url"]
            assert client.get(f"/fhir/{rtype}/{resource['id']}").get_json() == resource
            found = client.get(f"/fhir/{rtype}", query_string={"url": resource["url"]}).get_json()
            assert [e["resource"]["id"] for e in found["entry"]] == [resource["id"]]
    for url in canonicals:
        found = client.get("/fhir/OperationDefinition", query_string={"url": url}).get_json()
        assert found["total"] == 1, url
    assert client.get("/fhir/CodeSystem", query_string={"colour": "red"}).status_code == 400
    assert client.get("/fhir/CodeSystem/no-such").status_code == 404


def test_every_operation_parameter_has_a_type_or_parts(client: FlaskClient) -> None:
    """OperationDefinition invariant opd-1 (FHIR R4): ``type.exists() or part.exists()``."""
    for entry in client.get("/fhir/OperationDefinition").get_json()["entry"]:
        for param in entry["resource"]["parameter"]:
            assert param.get("type") or param.get("part"), (entry["resource"]["id"], param["name"])
