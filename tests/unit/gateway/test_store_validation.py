"""Every store refuses invalid R4 on write (a code outside a required binding), naming the
element, and ``$validate`` reports the same issues without writing."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.store.base import FhirStore
from tests.unit.gateway import test_store_behaviour as behaviour
from tests.unit.gateway import test_store_rest as rest
from tests.unit.gateway.test_store_behaviour import (
    GATEWAY_BASE,
    expressions,
    fhir_error,
    observation,
)

# The stores and the REST client of the behaviour and REST tests (fixtures by module name).
store = behaviour.store
app, client, scopes = rest.app, rest.client, rest.scopes


def test_a_code_outside_a_required_binding_is_refused_and_nothing_is_stored(store: FhirStore) -> None:
    err = fhir_error(store.put, observation("bad", status="bogus"))
    assert err.status == 400 and expressions(err) == ["Observation.status"]
    assert fhir_error(store.read, "Observation", "bad").status == 404
    stored, created = store.put(observation("good", status="amended"))
    assert created and stored["status"] == "amended"


def test_a_transaction_with_an_invalid_entry_names_it_and_writes_nothing(store: FhirStore) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation(oid), "request": {"method": "PUT", "url": f"Observation/{oid}"}}
        for oid in ("t1", "t2")]}
    bundle["entry"][1]["resource"]["status"] = "done"
    err = fhir_error(store.transaction, bundle, GATEWAY_BASE)
    assert expressions(err) == ["Bundle.entry[1].resource.status"]
    assert fhir_error(store.read, "Observation", "t1").status == 404


def test_a_batch_answers_the_invalid_entry_alone(store: FhirStore) -> None:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": observation(oid), "request": {"method": "PUT", "url": f"Observation/{oid}"}}
        for oid in ("b1", "b2", "b3")]}
    bundle["entry"][1]["resource"]["status"] = "done"
    answer = store.transaction(bundle, GATEWAY_BASE)
    statuses = [e["response"]["status"][:3] for e in answer["entry"]]
    assert statuses == ["201", "400", "201"]
    assert store.read("Observation", "b3")["id"] == "b3"


@pytest.mark.parametrize("wrap", [False, True])
def test_validate_reports_issues_without_writing(client: FlaskClient, wrap: bool) -> None:
    bad = observation("v1", status="bogus")
    body: dict[str, Any] = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": bad}]} \
        if wrap else bad
    answer = client.post("/fhir/Observation/$validate", json=body)
    assert answer.status_code == 200
    assert [i["expression"] for i in answer.get_json()["issue"]] == [["Observation.status"]]
    assert client.get("/fhir/Observation/v1").status_code == 404
    good = client.post("/fhir/Observation/$validate", json=observation("v1"))
    assert [i["severity"] for i in good.get_json()["issue"]] == ["information"]
    wrong_type = client.post("/fhir/Patient/$validate", json=observation("v1"))
    assert wrong_type.status_code == 400
