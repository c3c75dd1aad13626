"""The seam gateway operation → service client → write-back, without processes.

The gateway is built by its composition root around a fake HTTP session in the real
:class:`ServiceClient` (the services' answers are scripted) and a fake job queue; the store is
the real embedded SQL store on a SQLite file. What the end-to-end suite checks over gunicorn
processes is checked here in milliseconds: the request the service receives, the output the
caller receives, and what is (or is not) written back.
"""

from __future__ import annotations

import json
import json as _json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.deps import GatewayDeps, build_deps
from gateway.service_client import ServiceClient
from gateway.store.sql import SqlStore
from gateway.writeback import RESULT_TAG
from netliver.settings import Settings

pytestmark = pytest.mark.unit

Answer = Callable[[str, Any], requests.Response]


def _response(status: int, body: Any) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(body).encode()
    resp.headers["Content-Type"] = "application/fhir+json"
    return resp


class FakeSession:
    """Stands in for ``requests.Session`` in the service client: records each POST and answers
    with ``answer(url, json_body)``."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.answer: Answer = lambda url, body: _response(404, {})

    def post(self, url: str, json: Any = None, params: Any = None, timeout: float = 0,
             headers: dict[str, str] | None = None, data: bytes | None = None) -> requests.Response:
        body = json if data is None else _json.loads(data)
        self.posts.append({"url": url, "json": body, "data": data, "params": params, "headers": headers or {}})
        return self.answer(url, body)

    def get(self, url: str, timeout: float = 0) -> requests.Response:
        return _response(200, {"version": "test"})


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, job_id: str) -> None:
        self.sent.append(job_id)

    def ping(self) -> dict[str, Any]:
        return {"status": "pass"}


@pytest.fixture
def session() -> FakeSession:
    return FakeSession()


@pytest.fixture
def deps(tmp_path: Path, session: FakeSession) -> GatewayDeps:
    settings = Settings.from_env({
        "AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "DOSIMETRY_URL": "http://dosimetry.test", "ELIGIBILITY_URL": "http://eligibility.test",
        "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING",
    })
    return build_deps(settings, store=SqlStore(settings.database_url),
                      services=ServiceClient(settings, session=session),  # type: ignore[arg-type]
                      dispatcher=FakeQueue())


@pytest.fixture
def client(deps: GatewayDeps) -> FlaskClient:
    return create_app(deps.settings, deps=deps).test_client()


PLAN = {"resourceType": "Observation", "id": "plan-1", "status": "final",
        "code": {"text": "SIRT activity plan"}, "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 1.8, "unit": "GBq"}}
PROVENANCE = {"resourceType": "Provenance", "id": "prov-1", "target": [{"reference": "Observation/plan-1"}],
              "recorded": "2026-12-01T10:00:00Z", "agent": [{"who": {"display": "netliver dosimetry"}}]}
OUTPUT = {"resourceType": "Parameters", "parameter": [{"name": "activityGBq", "valueDecimal": 1.8}]}
REQUEST = {"resourceType": "Parameters", "parameter": [{"name": "method", "valueCode": "bsa"}]}


def _answers(write: list[dict[str, Any]], output: dict[str, Any] = OUTPUT) -> Answer:
    return lambda url, body: _response(200, {"output": output, "write": write})


def test_an_operation_is_forwarded_answered_and_its_results_written_back(
        client: FlaskClient, session: FakeSession, deps: GatewayDeps) -> None:
    session.answer = _answers([PLAN, PROVENANCE])
    resp = client.post("/fhir/$sirt-activity?protocol=x", json=REQUEST, headers={"X-Request-ID": "req-7"})
    assert resp.status_code == 200 and resp.get_json() == OUTPUT
    (post,) = session.posts
    assert post["url"] == "http://dosimetry.test/operations/sirt-activity"
    assert post["json"] == REQUEST and post["params"] == {"protocol": "x"}
    assert post["headers"]["X-Request-ID"] == "req-7"
    stored = deps.store.read("Observation", "plan-1")
    assert stored["valueQuantity"]["value"] == 1.8
    assert RESULT_TAG in stored["meta"]["tag"]
    assert deps.store.read("Provenance", "prov-1")["target"] == PROVENANCE["target"]


def test_a_body_the_gateway_does_not_change_reaches_the_service_as_the_caller_sent_it(
        client: FlaskClient, session: FakeSession) -> None:
    # spacing, key order and a decimal's trailing zero: what a parse and re-serialise would change
    sent = b'{ "parameter": [ {"valueCode": "bsa", "name": "method"}, {"name": "bsaM2", "valueDecimal": 1.50} ],\n' \
           b'  "resourceType": "Parameters" }'
    session.answer = _answers([PLAN, PROVENANCE])
    resp = client.post("/fhir/$sirt-activity", data=sent, content_type="application/fhir+json")
    assert resp.status_code == 200
    (post,) = session.posts
    assert post["data"] == sent
    # a body the gateway adds to (the stored record of the patient) is serialised from its JSON
    session.posts.clear()
    with_patient = {"resourceType": "Parameters", "parameter": [
        {"name": "method", "valueCode": "bsa"}, {"name": "patient", "valueReference": {"reference": "Patient/p9"}}]}
    assert client.post("/fhir/$sirt-activity", json=with_patient).status_code == 200
    (post,) = session.posts
    assert post["data"] is None and post["json"]["parameter"][:2] == with_patient["parameter"]


def test_the_same_results_again_write_no_new_version(client: FlaskClient, session: FakeSession,
                                                     deps: GatewayDeps) -> None:
    session.answer = _answers([PLAN, PROVENANCE])
    assert client.post("/fhir/$sirt-activity", json=REQUEST).status_code == 200
    again = {**PROVENANCE, "recorded": "2026-12-01T11:00:00Z"}  # computed again, nothing changed
    session.answer = _answers([PLAN, again])
    assert client.post("/fhir/$sirt-activity", json=REQUEST).status_code == 200
    assert deps.store.read("Observation", "plan-1")["meta"]["versionId"] == "1"
    assert deps.store.read("Provenance", "prov-1")["recorded"] == PROVENANCE["recorded"]
    changed = {**PLAN, "valueQuantity": {"value": 2.0, "unit": "GBq"}}
    session.answer = _answers([changed, again])
    assert client.post("/fhir/$sirt-activity", json=REQUEST).status_code == 200
    assert deps.store.read("Observation", "plan-1")["meta"]["versionId"] == "2"


def test_a_result_the_store_refuses_is_the_service_s_fault_and_nothing_is_half_written(
        client: FlaskClient, session: FakeSession, deps: GatewayDeps) -> None:
    broken = {**PLAN, "id": "plan-2", "valueQuantity": {"value": "about two", "unit": "GBq"}}
    session.answer = _answers([{**PLAN, "id": "plan-ok"}, broken])
    resp = client.post("/fhir/$sirt-activity", json=REQUEST)
    assert resp.status_code == 502
    assert "dosimetry service produced a result the store refused" in resp.get_json()["issue"][0]["diagnostics"]
    for rid in ("plan-ok", "plan-2"):
        assert client.get(f"/fhir/Observation/{rid}").status_code == 404


def test_an_unreachable_service_is_a_503_with_retry_after_and_writes_nothing(
        client: FlaskClient, session: FakeSession) -> None:
    def refuse(url: str, body: Any) -> requests.Response:
        raise requests.ConnectionError("refused")

    session.answer = refuse
    resp = client.post("/fhir/$sirt-activity", json=REQUEST)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert client.get("/fhir/Observation?_count=1").get_json()["total"] == 0


def test_the_service_s_own_outcome_is_relayed_with_its_status_and_element(
        client: FlaskClient, session: FakeSession) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "value", "diagnostics": "lungShuntFraction must be 0-1",
         "expression": ["Parameters.parameter[2].valueDecimal"]}]}
    session.answer = lambda url, body: _response(422, outcome)
    resp = client.post("/fhir/$sirt-activity", json=REQUEST)
    assert resp.status_code == 422
    assert resp.get_json()["issue"][0]["expression"] == ["Parameters.parameter[2].valueDecimal"]


def test_an_unreadable_answer_is_a_502(client: FlaskClient, session: FakeSession) -> None:
    session.answer = lambda url, body: _response(200, {"no": "output"})
    assert client.post("/fhir/$sirt-activity", json=REQUEST).status_code == 502


def test_the_patient_form_sends_the_stored_record_without_earlier_results(
        client: FlaskClient, session: FakeSession) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-05-01"}
    bilirubin = {"resourceType": "Observation", "id": "bili", "status": "final", "code": {"text": "bilirubin"},
                 "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 1.1, "unit": "mg/dL"}}
    earlier = {**bilirubin, "id": "earlier-result", "code": {"text": "eligibility"},
               "meta": {"tag": [RESULT_TAG]}}
    for res in (patient, bilirubin, earlier):
        assert client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res).status_code == 201
    bundle_out = {"resourceType": "Bundle", "type": "collection", "entry": []}
    session.answer = _answers([], bundle_out)
    resp = client.post("/fhir/Patient/p1/$evaluate-eligibility",
                       json={"resourceType": "Parameters", "parameter": [{"name": "date", "valueDate": "2026-12-01"}]})
    assert resp.status_code == 200 and resp.get_json() == bundle_out
    (post,) = session.posts
    assert post["url"] == "http://eligibility.test/operations/evaluate-eligibility"
    assert post["params"] == {"date": "2026-12-01"}
    sent = sorted(e["resource"]["id"] for e in post["json"]["entry"])
    assert sent == ["bili", "p1"]


def test_deps_built_with_other_settings_are_refused(deps: GatewayDeps) -> None:
    with pytest.raises(ValueError, match="other settings"):
        create_app(Settings.from_env({"AUTH_MODE": "off"}), deps=deps)
