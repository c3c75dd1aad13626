"""``_include``/``_revinclude`` under ``AUTH_MODE=jwt``: a search returns only resources the
token's scopes let it read (SMART App Launch 2.0, scopes bound what is returned), so a token
that may read Observations but not Patients does not get the Patients an ``_include`` would add."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support.jwks import JwksServer

pytestmark = pytest.mark.unit

WRITER = "system/Patient.cruds system/Observation.cruds"


def _bearer(idp: JwksServer, scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {idp.mint(scopes)}"}


def _seed(client: FlaskClient, idp: JwksServer) -> None:
    headers = {**_bearer(idp, WRITER), "Content-Type": "application/fhir+json"}
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=headers).status_code in (200, 201)
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "bilirubin"},
           "subject": {"reference": "Patient/p1"}}
    assert client.put("/fhir/Observation/o1", json=obs, headers=headers).status_code in (200, 201)


def _types(bundle: dict[str, Any], mode: str) -> list[str]:
    return [e["resource"]["resourceType"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == mode]


def test_an_include_of_a_type_the_token_cannot_read_is_left_out_and_said(jwt_client: FlaskClient, idp: JwksServer) -> None:
    _seed(jwt_client, idp)
    narrow = jwt_client.get("/fhir/Observation?_include=Observation:subject", headers=_bearer(idp, "system/Observation.rs"))
    assert narrow.status_code == 200
    body = narrow.get_json()
    assert _types(body, "match") == ["Observation"] and _types(body, "include") == []
    said = [i["diagnostics"] for e in body["entry"] if e["resource"]["resourceType"] == "OperationOutcome"
            for i in e["resource"]["issue"]]
    assert any("Patient" in d for d in said)


def test_an_include_the_token_may_read_is_returned(jwt_client: FlaskClient, idp: JwksServer) -> None:
    _seed(jwt_client, idp)
    wide = jwt_client.get("/fhir/Observation?_include=Observation:subject",
                          headers=_bearer(idp, "system/Observation.rs system/Patient.rs"))
    body = wide.get_json()
    assert _types(body, "include") == ["Patient"]
    assert all(e["resource"]["resourceType"] != "OperationOutcome" for e in body["entry"])


def test_a_revinclude_of_a_type_the_token_cannot_read_is_left_out(jwt_client: FlaskClient, idp: JwksServer) -> None:
    _seed(jwt_client, idp)
    narrow = jwt_client.get("/fhir/Patient?_revinclude=Observation:subject", headers=_bearer(idp, "system/Patient.rs"))
    assert _types(narrow.get_json(), "match") == ["Patient"] and _types(narrow.get_json(), "include") == []
    wide = jwt_client.get("/fhir/Patient?_revinclude=Observation:subject",
                          headers=_bearer(idp, "system/Patient.rs system/Observation.rs"))
    assert _types(wide.get_json(), "include") == ["Observation"]
