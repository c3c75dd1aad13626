"""The platform as a caller sees it: real gunicorn processes, real Redis, PostgreSQL-backed
store, HTTP only.

Every error status of the contract is produced through the gateway and checked for its
OperationOutcome (status, ``issue.code``, ``expression``) and that nothing was written.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from infra.stack import Stack, free_port
from netliver.fhir.codesystems import CODESYSTEMS
from tests.support import postgres
from tests.support.jwks import JwksServer
from tests.support.stack import make_stack, running

FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    postgres.ensure_running()
    name = postgres.create_database()
    try:
        with running(make_stack(tmp_path_factory.mktemp("platform"), database_url=postgres.database_url(name),
                                env={"ORTHANC_CATCHUP_S": "0"})) as s:
            yield s
    finally:
        postgres.drop_database(name)


@pytest.fixture(scope="module")
def gw(stack: Stack) -> str:
    return stack.gateway_url


def _count(gw: str, rtype: str) -> int:
    resp = requests.get(f"{gw}/fhir/{rtype}", params={"_count": "0"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["total"])


def _counts(gw: str) -> dict[str, int]:
    return {t: _count(gw, t) for t in ("Observation", "Provenance", "Task", "DiagnosticReport")}


def _assert_outcome(resp: requests.Response, status: int, code: str | None = None,
                    expression: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers["Content-Type"].startswith("application/fhir+json")
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] in {"error", "fatal"} and issue["diagnostics"]
    if code:
        assert issue["code"] == code, issue
    if expression:
        assert any(expression in e for i in body["issue"] for e in i.get("expression", [])), body
    assert "Traceback" not in resp.text
    return body


def test_health_reports_every_dependency(gw: str) -> None:
    body = requests.get(f"{gw}/health", timeout=10).json()
    assert body["status"] == "pass", body
    assert set(body["checks"]) >= {"store", "broker", "eligibility", "response", "dosimetry"}
    assert all(c["status"] == "pass" for name, c in body["checks"].items() if name != "pacs")
    assert body["checks"]["pacs"]["status"] in {"pass", "warn"}


def test_metadata_lists_every_operation_with_its_definition(gw: str) -> None:
    cs = requests.get(f"{gw}/fhir/metadata", timeout=10).json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    ops = {o["name"] for o in cs["rest"][0]["operation"]}
    assert ops >= {"evaluate-eligibility", "tumor-response", "sirt-activity", "voxel-dosimetry"}
    for op in ops:
        od = requests.get(f"{gw}/fhir/OperationDefinition/{op}", timeout=10).json()
        assert od["resourceType"] == "OperationDefinition" and od["code"] == op


@pytest.mark.parametrize("system_id", sorted(CODESYSTEMS))
def test_every_project_codesystem_is_served(gw: str, system_id: str) -> None:
    body = requests.get(f"{gw}/fhir/CodeSystem/{system_id}", timeout=10).json()
    assert body["resourceType"] == "CodeSystem"
    assert body["url"] == f"https://netliver.org/fhir/CodeSystem/{system_id}"
    assert body["count"] == len(body["concept"]) > 0


def test_unknown_codesystem_is_404(gw: str) -> None:
    _assert_outcome(requests.get(f"{gw}/fhir/CodeSystem/nope", timeout=10), 404, "not-found")


# -- every error status through the gateway, nothing written ----------------------------------

def test_malformed_json_is_400(gw: str) -> None:
    before = _counts(gw)
    resp = requests.post(f"{gw}/fhir/$evaluate-eligibility", data=b'{"resourceType": "Bundle", ', headers=FHIR, timeout=10)
    _assert_outcome(resp, 400, "invalid")
    assert _counts(gw) == before


def test_not_a_fhir_resource_is_400(gw: str) -> None:
    before = _counts(gw)
    resp = requests.post(f"{gw}/fhir/$tumor-response", data=json.dumps({"hello": "world"}), headers=FHIR, timeout=10)
    _assert_outcome(resp, 400, expression="resourceType")
    resp = requests.post(f"{gw}/fhir/$tumor-response", data=json.dumps([1, 2]), headers=FHIR, timeout=10)
    _assert_outcome(resp, 400)
    assert _counts(gw) == before


def test_unknown_operation_and_resource_are_404(gw: str) -> None:
    _assert_outcome(requests.post(f"{gw}/fhir/$no-such-operation", json={"resourceType": "Parameters"}, timeout=10), 404)
    _assert_outcome(requests.get(f"{gw}/fhir/Observation/{uuid.uuid4()}", timeout=10), 404, "not-found")
    _assert_outcome(requests.get(f"{gw}/fhir/NoSuchType/1", timeout=10), 404)


def test_too_large_body_is_413(gw: str) -> None:
    before = _counts(gw)
    big = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [],
                      "padding": "x" * (11 * 1024 * 1024)})
    resp = requests.post(f"{gw}/fhir/$evaluate-eligibility", data=big, headers=FHIR, timeout=30)
    _assert_outcome(resp, 413, "too-long")
    assert _counts(gw) == before


_SIXTY_MB = b'{"resourceType": "Bundle", "type": "collection", "padding": "' + b"x" * (60 * 1024 * 1024) + b'"}'


class _CountingBody(io.BytesIO):
    """A request body that counts what the client library read of it (and so sent)."""

    sent = 0

    def read(self, size: int | None = -1) -> bytes:
        block = super().read(size)
        self.sent += len(block)
        return block


@pytest.mark.parametrize(("method", "path", "connection"), [
    ("POST", "/fhir/$evaluate-eligibility", "keep-alive"),
    ("PUT", "/fhir/Observation/too-big", "close"),
    ("POST", "/fhir", "close"),
])
def test_a_60_mb_body_is_read_to_its_end_and_answered_413(gw: str, method: str, path: str,
                                                          connection: str) -> None:
    """``requests`` sends the whole body before it reads the answer: the gateway reads and
    discards it, then answers 413 (closing at once made the kernel reset the connection, and
    the client saw a broken pipe, or the 413 only by luck after sending part of the body)."""
    before = _counts(gw)
    body = _CountingBody(_SIXTY_MB)
    resp = requests.request(method, f"{gw}{path}", data=body, timeout=120,
                            headers={**FHIR, "Connection": connection})
    outcome = _assert_outcome(resp, 413, "too-long")
    assert "10485760 bytes" in outcome["issue"][0]["diagnostics"]
    assert body.sent == len(_SIXTY_MB)
    assert _counts(gw) == before
    assert requests.get(f"{gw}/fhir/Observation/too-big", timeout=10).status_code == 404


def test_a_60_mb_body_sent_with_urllib_gets_the_413_outcome(gw: str) -> None:
    before = _counts(gw)
    req = urllib.request.Request(f"{gw}/fhir/$sirt-activity", data=_SIXTY_MB, headers=FHIR, method="POST")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(req, timeout=120)
    assert answer.value.code == 413
    outcome = json.loads(answer.value.read())
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "too-long"
    assert _counts(gw) == before


def test_a_chunked_body_over_the_limit_is_413_not_invalid_json(gw: str) -> None:
    """Without a Content-Length the body is cut at the limit; the rest makes it 413."""
    before = _counts(gw)

    def blocks() -> Iterator[bytes]:
        for start in range(0, len(_SIXTY_MB), 1 << 20):
            yield _SIXTY_MB[start:start + (1 << 20)]

    resp = requests.post(f"{gw}/fhir/$evaluate-eligibility", data=blocks(), headers=FHIR, timeout=120)
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    _assert_outcome(resp, 413, "too-long")
    assert _counts(gw) == before


def test_wrong_content_type_is_415(gw: str) -> None:
    before = _counts(gw)
    resp = requests.post(f"{gw}/fhir/$sirt-activity", data="<Parameters/>", headers={"Content-Type": "application/xml"}, timeout=10)
    _assert_outcome(resp, 415, "not-supported")
    assert _counts(gw) == before


def test_valid_but_unusable_is_422_naming_the_element(gw: str) -> None:
    before = _counts(gw)
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "studyInstanceUid", "valueString": "1.2.3"},
        {"name": "administeredActivityGBq", "valueDecimal": -2.0}]}
    resp = requests.post(f"{gw}/fhir/$voxel-dosimetry", json=params, headers={"Prefer": "respond-async"}, timeout=10)
    _assert_outcome(resp, 422, "value", "parameter[1].valueDecimal")
    resp = requests.post(f"{gw}/fhir/$tumor-response", json={"resourceType": "Parameters"}, timeout=10)
    _assert_outcome(resp, 422, "required", expression="Parameters.parameter.where(name='input')")
    resp = requests.post(f"{gw}/fhir/$tumor-response", json={"resourceType": "Patient"}, timeout=10)
    _assert_outcome(resp, 422, expression="resourceType")
    assert _counts(gw) == before


def test_a_service_down_is_503_with_retry_after(stack: Stack) -> None:
    closed = free_port()
    url = stack.start_gateway("gateway-503", free_port(), {"ELIGIBILITY_URL": f"http://127.0.0.1:{closed}"})
    before = _counts(url)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p503"}}]}
    resp = requests.post(f"{url}/fhir/$evaluate-eligibility", json=bundle, timeout=30)
    _assert_outcome(resp, 503, "transient")
    assert int(resp.headers["Retry-After"]) > 0
    assert _counts(url) == before
    health = requests.get(f"{url}/health", timeout=10)
    assert health.status_code == 503 and health.json()["checks"]["eligibility"]["status"] == "fail"


def test_rate_limit_is_429_with_retry_after(stack: Stack) -> None:
    url = stack.start_gateway("gateway-429", free_port(), {"RATE_LIMIT_PER_MINUTE": "5",
                                                             "RATE_LIMIT_KEY_PREFIX": f"netliver-test:{uuid.uuid4().hex}:"})
    statuses = [requests.get(f"{url}/fhir/CodeSystem/therapy", timeout=10) for _ in range(8)]
    codes = [r.status_code for r in statuses]
    # The start-up probe of /fhir/metadata already spent part of this minute's 5 requests.
    first_limited = codes.index(429)
    assert 1 <= first_limited <= 5 and set(codes[:first_limited]) == {200}
    assert set(codes[first_limited:]) == {429}
    limited = statuses[-1]
    _assert_outcome(limited, 429, "throttled")
    assert int(limited.headers["Retry-After"]) > 0
    assert requests.get(f"{url}/health", timeout=10).status_code in (200, 503)  # /health is never limited


def test_jwt_mode_401_and_403(stack: Stack) -> None:
    with JwksServer() as idp:
        url = stack.start_gateway("gateway-jwt", free_port(), {
            "AUTH_MODE": "jwt", "AUTH_JWKS_URL": idp.jwks_url, "AUTH_ISSUER": idp.issuer,
            "AUTH_AUDIENCE": idp.audience, "INTERNAL_TOKEN": f"e2e-{uuid.uuid4().hex}"})
        assert requests.get(f"{url}/fhir/metadata", timeout=10).status_code == 200
        assert requests.get(f"{url}/health", timeout=10).status_code in (200, 503)
        _assert_outcome(requests.get(f"{url}/fhir/Observation", timeout=10), 401)
        for bad in (idp.expired_token(), idp.wrong_audience_token(), idp.unknown_key_token(), "not.a.jwt"):
            resp = requests.get(f"{url}/fhir/Observation", headers={"Authorization": f"Bearer {bad}"}, timeout=10)
            _assert_outcome(resp, 401)
        reader = idp.mint("system/Observation.rs")
        ok = requests.get(f"{url}/fhir/Observation", headers={"Authorization": f"Bearer {reader}"}, timeout=10)
        assert ok.status_code == 200
        before = _counts(stack.gateway_url)
        resp = requests.post(f"{url}/fhir/$voxel-dosimetry", headers={"Authorization": f"Bearer {reader}"},
                             json={"resourceType": "Parameters", "parameter": []}, timeout=10)
        body = _assert_outcome(resp, 403, "forbidden")
        assert "system/" in body["issue"][0]["diagnostics"]
        assert _counts(stack.gateway_url) == before


# -- store: durability, idempotency, upstream mode --------------------------------------------

def test_store_roundtrip_search_and_idempotent_put(gw: str) -> None:
    pid = f"p-{uuid.uuid4().hex[:8]}"
    obs = {"resourceType": "Observation", "id": f"{pid}-bili", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
           "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-11-01",
           "valueQuantity": {"value": 1.20, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": pid}, "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"resource": obs, "request": {"method": "PUT", "url": f"Observation/{pid}-bili"}}]}
    for _ in range(2):
        assert requests.post(f"{gw}/fhir", json=bundle, timeout=10).status_code == 200
    stored = requests.get(f"{gw}/fhir/Observation/{pid}-bili", timeout=10).json()
    assert stored["meta"]["versionId"] == "1"
    found = requests.get(f"{gw}/fhir/Observation", params={"subject": f"Patient/{pid}", "code": "http://loinc.org|1975-2"}, timeout=10).json()
    assert found["total"] == 1
    assert requests.get(f"{gw}/fhir/Observation", params={"subject": f"Patient/{pid}", "code": "http://loinc.org|718-7"}, timeout=10).json()["total"] == 0


def test_upstream_mode_reads_and_searches_the_same(stack: Stack, gw: str) -> None:
    url = stack.start_gateway("gateway-upstream", free_port(), {
        "FHIR_UPSTREAM_URL": f"{gw}/fhir", "JOB_QUEUE": f"upstream-{uuid.uuid4().hex[:8]}",
        "DATABASE_URL": f"sqlite:///{stack.config.data_dir / 'upstream-jobs.db'}"})
    pid = f"up-{uuid.uuid4().hex[:8]}"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": pid}, "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"resource": {"resourceType": "Condition", "id": f"{pid}-asc", "subject": {"reference": f"Patient/{pid}"},
                      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "389026000"}]}},
         "request": {"method": "PUT", "url": f"Condition/{pid}-asc"}}]}
    assert requests.post(f"{url}/fhir", json=bundle, timeout=10).status_code == 200
    direct = requests.get(f"{gw}/fhir/Condition/{pid}-asc", timeout=10).json()
    via = requests.get(f"{url}/fhir/Condition/{pid}-asc", timeout=10).json()
    assert direct == via
    s1 = requests.get(f"{gw}/fhir/Condition", params={"subject": f"Patient/{pid}"}, timeout=10).json()
    s2 = requests.get(f"{url}/fhir/Condition", params={"subject": f"Patient/{pid}"}, timeout=10).json()
    assert s1["total"] == s2["total"] == 1
    assert s1["entry"][0]["resource"] == s2["entry"][0]["resource"]
    # Jobs in upstream mode: the record stays local, the Task lives in the upstream store.
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "studyInstanceUid", "valueString": "1.2.826.0.1.3680043.8.498.77"},
        {"name": "administeredActivityGBq", "valueDecimal": 1.5}]}
    resp = requests.post(f"{url}/fhir/$voxel-dosimetry", json=params, headers={"Prefer": "respond-async"}, timeout=30)
    assert resp.status_code == 202
    task_id = resp.headers["Content-Location"].rsplit("/", 1)[1]
    assert resp.headers["Content-Location"].startswith(url)
    upstream_task = requests.get(f"{gw}/fhir/Task/{task_id}", timeout=10).json()
    assert upstream_task["status"] == "requested"
    assert requests.get(f"{url}/fhir/Task/{task_id}", timeout=10).json() == upstream_task


def test_store_is_durable_across_a_gateway_restart(stack: Stack, gw: str) -> None:
    pid = f"dur-{uuid.uuid4().hex[:8]}"
    requests.put(f"{gw}/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid}, timeout=10)
    stack.kill("gateway", 15)
    proc = stack._gunicorn("gateway", "gateway.app:create_app()", stack.config.gateway_port, 2)
    from infra.stack import _wait_http
    _wait_http(f"{gw}/fhir/metadata", 60, proc)
    assert requests.get(f"{gw}/fhir/Patient/{pid}", timeout=10).json()["id"] == pid
