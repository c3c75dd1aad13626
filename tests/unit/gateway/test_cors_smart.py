"""CORS for browser-based EHRs (``CORS_ALLOWED_ORIGINS``; none by default) and the public
``/.well-known/smart-configuration`` (SMART App Launch 2.x "Conformance")."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.auth import parse_scopes
from gateway.cors import parse_origins
from netliver.settings import Settings
from tests.support.jwks import JwksServer
from tests.support.jwt_gateway import jwt_gateway_env

EHR_ORIGIN = "https://ehr.hospital.test"
TOKEN_URL = "https://idp.hospital.test/oauth2/token"


def _client(tmp: Path, idp: JwksServer, **more: str) -> FlaskClient:
    return create_app(Settings.from_env(jwt_gateway_env(idp, tmp, **more))).test_client()


def _preflight(client: FlaskClient, path: str, origin: str, method: str = "POST") -> object:
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": "authorization, content-type"})


def test_no_origin_is_allowed_by_default(tmp_path: Path, idp: JwksServer) -> None:
    client = _client(tmp_path, idp)
    resp = client.get("/fhir/metadata", headers={"Origin": EHR_ORIGIN})
    assert resp.status_code == 200 and "Access-Control-Allow-Origin" not in resp.headers
    assert resp.get_json()["rest"][0]["security"]["cors"] is False
    assert _preflight(client, "/cds-services/liver-directed-therapy", EHR_ORIGIN).status_code == 403


def test_allowed_origins_get_preflight_answers_and_headers_errors_included(tmp_path: Path, idp: JwksServer) -> None:
    client = _client(tmp_path, idp, CORS_ALLOWED_ORIGINS=f"{EHR_ORIGIN}, https://apps.hospital.test:8443")
    assert client.get("/fhir/metadata").get_json()["rest"][0]["security"]["cors"] is True
    for path in ("/cds-services/liver-directed-therapy", "/fhir/Patient/p1", "/fhir/$evaluate-eligibility",
                 "/.well-known/smart-configuration"):
        resp = _preflight(client, path, EHR_ORIGIN)  # no token: browsers send none with a preflight
        assert resp.status_code == 204, (path, resp.get_json())
        assert resp.headers["Access-Control-Allow-Origin"] == EHR_ORIGIN
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Origin" in resp.headers["Vary"]
    refused = _preflight(client, "/fhir/Patient/p1", "https://evil.example")
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    # An error the browser must be able to read (401 without a token) carries the headers too.
    resp = client.get("/fhir/Patient/p1", headers={"Origin": EHR_ORIGIN})
    assert resp.status_code == 401
    assert resp.headers["Access-Control-Allow-Origin"] == EHR_ORIGIN
    assert "WWW-Authenticate" in resp.headers["Access-Control-Expose-Headers"]
    discovery = client.get("/cds-services", headers={"Origin": "https://apps.hospital.test:8443"})
    assert discovery.headers["Access-Control-Allow-Origin"] == "https://apps.hospital.test:8443"
    other = client.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
    assert "Access-Control-Allow-Origin" not in client.get("/health", headers={"Origin": EHR_ORIGIN}).headers


@pytest.mark.parametrize("bad", ["*", "https://ehr.test/path", "ehr.test", "ftp://ehr.test", "https://u@ehr.test"])
def test_an_origin_list_that_is_not_origins_stops_the_gateway(bad: str) -> None:
    with pytest.raises(ValueError, match="CORS_ALLOWED_ORIGINS"):
        parse_origins(f"https://ok.test,{bad}")
    assert parse_origins(" https://OK.test , http://127.0.0.1:3000/ ") == {"https://ok.test", "http://127.0.0.1:3000"}


def test_smart_configuration_is_public_and_describes_the_issuer(tmp_path: Path, idp: JwksServer) -> None:
    client = _client(tmp_path, idp, AUTH_TOKEN_URL=TOKEN_URL)
    resp = client.get("/.well-known/smart-configuration")  # no token
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["issuer"] == idp.issuer and doc["jwks_uri"] == idp.jwks_url and doc["token_endpoint"] == TOKEN_URL
    assert doc["grant_types_supported"] == ["client_credentials"] and "authorization_endpoint" not in doc
    assert doc["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert "client-confidential-asymmetric" in doc["capabilities"]
    # Every published scope is one the gateway's checks honour, and the common ones are there.
    scopes = doc["scopes_supported"]
    assert all(parse_scopes(s) for s in scopes), [s for s in scopes if not parse_scopes(s)]
    assert {"system/*.rs", "system/Observation.cu", "system/AuditEvent.rs", "system/CodeSystem.rs"} <= set(scopes)
    with_authorize = _client(tmp_path / "b", idp, AUTH_TOKEN_URL=TOKEN_URL,
                             AUTH_AUTHORIZE_URL="https://idp.hospital.test/oauth2/authorize")
    doc = with_authorize.get("/.well-known/smart-configuration").get_json()
    assert doc["authorization_endpoint"] == "https://idp.hospital.test/oauth2/authorize"
    assert "authorization_code" in doc["grant_types_supported"] and doc["code_challenge_methods_supported"] == ["S256"]


def test_without_a_token_endpoint_there_is_no_smart_configuration(tmp_path: Path, idp: JwksServer) -> None:
    resp = _client(tmp_path, idp).get("/.well-known/smart-configuration")
    assert resp.status_code == 404 and "AUTH_TOKEN_URL" in resp.get_json()["issue"][0]["diagnostics"]
