"""Settings from the environment, and the Flask base every process shares."""

from __future__ import annotations

import pytest
from flask import Blueprint, Response

from netliver.fhir.outcome import FhirError
from netliver.settings import Settings
from netliver.web import create_base_app, create_service_app, fhir_response, read_fhir_body


def test_defaults_and_typed_overrides() -> None:
    s = Settings.from_env({})
    assert s.gateway_port == 8080 and s.auth_mode == "jwt" and s.fhir_upstream_url == ""
    s = Settings.from_env({"GATEWAY_PORT": "9090", "JOB_LEASE_S": "5", "ORTHANC_CATCHUP_S": "0.5",
                           "AUTH_MODE": "off"})
    assert (s.gateway_port, s.job_lease_s, s.orthanc_catch_up_s, s.auth_mode) == (9090, 5, 0.5, "off")


@pytest.mark.parametrize("env", [{"GATEWAY_PORT": "eighty"}, {"AUTH_MODE": "maybe"}, {"JOB_LEASE_S": "1.5"}])
def test_bad_settings_fail_at_start_naming_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=next(iter(env.values()))):
        Settings.from_env(env)


def test_every_setting_is_documented_once() -> None:
    rows = Settings.table()
    names = [name for name, _, _ in rows]
    assert len(names) == len(set(names))
    assert all(doc for _, _, doc in rows)
    assert {"REDIS_URL", "DATABASE_URL", "FHIR_UPSTREAM_URL", "DICOMWEB_URL", "ORTHANC_URL", "GATEWAY_PORT",
            "AUTH_MODE", "AUTH_JWKS_URL", "AUTH_ISSUER", "AUTH_AUDIENCE"} <= set(names)


def _app() -> object:
    bp = Blueprint("t", __name__)

    @bp.post("/echo")
    def echo() -> Response:
        return fhir_response(read_fhir_body(("Parameters",)))

    @bp.get("/boom")
    def boom() -> Response:
        raise RuntimeError("secret internals")

    @bp.get("/unusable")
    def unusable() -> Response:
        raise FhirError(422, "value", "negative mass", "Parameters.parameter[0].valueDecimal")

    return create_service_app("t", "1", bp, Settings.from_env({"MAX_BODY_BYTES": "200", "LOG_LEVEL": "ERROR"}))


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), [
    ("get", "/nowhere", {}, 404, "not-found"),
    ("put", "/echo", {}, 405, "not-supported"),
    ("post", "/echo", {"data": "{}", "content_type": "text/plain"}, 415, "not-supported"),
    ("post", "/echo", {"data": "{not json", "content_type": "application/fhir+json"}, 400, "invalid"),
    ("post", "/echo", {"data": "", "content_type": "application/fhir+json"}, 400, "invalid"),
    ("post", "/echo", {"data": '{"resourceType": "Patient"}', "content_type": "application/json"}, 422, "not-supported"),
    ("post", "/echo", {"data": '{"resourceType": "Parameters", "x": "' + "y" * 300 + '"}',
                       "content_type": "application/fhir+json"}, 413, "too-long"),
    ("get", "/boom", {}, 500, "exception"),
    ("get", "/unusable", {}, 422, "value"),
])
def test_every_error_is_an_operation_outcome(method: str, path: str, kwargs: dict[str, str], status: int, code: str) -> None:
    client = _app().test_client()  # type: ignore[attr-defined]
    resp = getattr(client, method)(path, **kwargs)
    assert resp.status_code == status
    assert resp.mimetype == "application/fhir+json"
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == code
    assert "Traceback" not in resp.get_data(as_text=True) and "secret internals" not in resp.get_data(as_text=True)


def test_a_valid_body_is_returned_as_sent() -> None:
    client = _app().test_client()  # type: ignore[attr-defined]
    resp = client.post("/echo", data='{"resourceType": "Parameters", "parameter": [{"name": "a", "valueDecimal": 1.50}]}',
                       content_type="application/fhir+json")
    assert resp.status_code == 200 and resp.get_json()["parameter"][0]["name"] == "a"
    assert resp.headers["X-Request-ID"]
    health = client.get("/health").get_json()
    assert health == {"status": "pass", "service": "t", "version": "1"}


def test_base_app_without_service_blueprint_still_speaks_outcome() -> None:
    app = create_base_app("bare", "0", Settings.from_env({}))
    assert app.test_client().get("/x").get_json()["resourceType"] == "OperationOutcome"
