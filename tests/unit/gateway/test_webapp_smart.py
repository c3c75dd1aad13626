"""The page as a SMART on FHIR app: standalone and EHR launch with PKCE S256 against a local
authorization server stand-in; the token is checked like any bearer token, kept in the session,
and gives the page the user's own rights (SMART App Launch 2.x; RFC 7636)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from netliver.settings import Settings
from tests.support.jwks import JwksServer
from tests.support.jwt_gateway import jwt_gateway_env

USER_SCOPES = "openid fhirUser user/Patient.rs user/Observation.rs user/DiagnosticReport.rs user/BodyStructure.rs"
AUTHORIZE_URL = "https://idp.hospital.test/authorize"
CLIENT_ID = "netliver-page"


class TokenEndpoint:
    """``POST /token``: answers a token for ``code`` when the PKCE verifier matches the challenge."""

    def __init__(self, idp: JwksServer) -> None:
        self.idp, self.challenge, self.code, self.scopes = idp, "", "the-code", USER_SCOPES
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                ok = (form.get("grant_type") == "authorization_code" and form.get("code") == outer.code
                      and form.get("client_id") == CLIENT_ID
                      and base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == outer.challenge)
                body = ({"access_token": outer.idp.mint(outer.scopes, sub="Practitioner/7"), "token_type": "Bearer",
                         "expires_in": 300, "patient": "p1", "scope": outer.scopes} if ok else {"error": "invalid_grant"})
                data = json.dumps(body).encode()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def token_endpoint(idp: JwksServer) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(idp)
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def _client(tmp_path: Path, idp: JwksServer, **extra: str) -> FlaskClient:
    settings = Settings.from_env(jwt_gateway_env(idp, tmp_path, **extra))
    client = create_app(settings).test_client()
    system = {"Authorization": f"Bearer {idp.mint('system/*.cruds')}"}
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1", "name": [{"text": "Ada Example"}]},
               headers=system)
    return client


@pytest.fixture
def client(tmp_path: Path, idp: JwksServer, token_endpoint: TokenEndpoint) -> FlaskClient:
    return _client(tmp_path, idp, AUTH_AUTHORIZE_URL=AUTHORIZE_URL, AUTH_TOKEN_URL=token_endpoint.url,
                   APP_CLIENT_ID=CLIENT_ID, APP_SESSION_SECRET="a-long-random-secret-of-this-deployment")


def _authorize(client: FlaskClient, path: str, endpoint: TokenEndpoint) -> dict[str, str]:
    resp = client.get(path)
    assert resp.status_code == 302
    url = urlsplit(resp.headers["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == AUTHORIZE_URL
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    endpoint.challenge = query["code_challenge"]
    return query


def test_standalone_launch_with_pkce_opens_the_page_with_the_users_rights(
        client: FlaskClient, token_endpoint: TokenEndpoint) -> None:
    assert client.get("/app/patient/p1").status_code == 401  # nothing launched yet
    query = _authorize(client, "/app/login", token_endpoint)
    assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == "http://localhost/app/callback" and query["aud"] == "http://localhost/fhir"
    assert "launch/patient" in query["scope"] and "user/Observation.rs" in query["scope"]
    done = client.get(f"/app/callback?code=the-code&state={query['state']}")
    assert done.status_code == 302 and done.headers["Location"].endswith("/app/patient/p1")
    page = client.get("/app/patient/p1")
    assert page.status_code == 200 and "Ada Example" in page.get_data(as_text=True)
    assert client.get("/fhir/Patient/p1").status_code == 401  # the session serves the page only


def test_ehr_launch_passes_the_launch_id_and_checks_the_issuer(client: FlaskClient, token_endpoint: TokenEndpoint) -> None:
    query = _authorize(client, "/app/launch?iss=http://localhost/fhir&launch=xyz-123", token_endpoint)
    assert query["launch"] == "xyz-123" and " launch " in f" {query['scope']} "
    assert client.get(f"/app/callback?code=the-code&state={query['state']}").status_code == 302
    assert client.get("/app/patient/p1").status_code == 200
    wrong = client.get("/app/launch?iss=https://other.example/fhir&launch=x")
    assert wrong.status_code == 400 and wrong.get_json()["issue"][0]["expression"] == ["iss"]


def test_an_ehr_launch_asks_for_patient_scopes_and_shows_that_patient_only(
        client: FlaskClient, idp: JwksServer, token_endpoint: TokenEndpoint) -> None:
    system = {"Authorization": f"Bearer {idp.mint('system/*.cruds')}"}
    client.put("/fhir/Patient/p2", json={"resourceType": "Patient", "id": "p2", "name": [{"text": "Bo Other"}]},
               headers=system)
    query = _authorize(client, "/app/launch?iss=http://localhost/fhir&launch=xyz-123", token_endpoint)
    asked = query["scope"].split()
    assert "patient/Observation.rs" in asked and not any(s.startswith(("user/", "system/")) for s in asked)
    # the token carries no patient claim: the patient comes from the token response (launch context)
    token_endpoint.scopes = query["scope"]
    assert client.get(f"/app/callback?code=the-code&state={query['state']}").status_code == 302
    assert client.get("/app/patient/p1").status_code == 200
    assert client.get("/app/patient/p1/report.pdf").status_code == 200
    other = client.get("/app/patient/p2")
    assert other.status_code == 403 and "patient/" in other.get_json()["issue"][0]["diagnostics"]
    assert client.get("/app/patient/p2/report.pdf").status_code == 403
    listed = client.get("/app/?q=").get_data(as_text=True)
    assert "/app/patient/p1" in listed and "/app/patient/p2" not in listed and "Bo Other" not in listed


def test_a_standalone_launch_with_user_scopes_reaches_every_patient(
        client: FlaskClient, idp: JwksServer, token_endpoint: TokenEndpoint) -> None:
    client.put("/fhir/Patient/p2", json={"resourceType": "Patient", "id": "p2"},
               headers={"Authorization": f"Bearer {idp.mint('system/*.cruds')}"})
    query = _authorize(client, "/app/login", token_endpoint)
    assert client.get(f"/app/callback?code=the-code&state={query['state']}").status_code == 302
    assert client.get("/app/patient/p2").status_code == 200
    assert "/app/patient/p2" in client.get("/app/").get_data(as_text=True)


def test_a_wrong_state_or_verifier_gives_no_session(client: FlaskClient, token_endpoint: TokenEndpoint) -> None:
    query = _authorize(client, "/app/login", token_endpoint)
    assert client.get("/app/callback?code=the-code&state=forged").status_code == 401
    assert client.get("/app/patient/p1").status_code == 401
    query = _authorize(client, "/app/login", token_endpoint)
    token_endpoint.challenge = "not-the-challenge-of-this-verifier"
    assert client.get(f"/app/callback?code=the-code&state={query['state']}").status_code == 401
    assert client.get("/app/patient/p1").status_code == 401


def test_user_scopes_too_narrow_for_the_page_are_a_403(client: FlaskClient, token_endpoint: TokenEndpoint) -> None:
    token_endpoint.scopes = "openid user/Patient.rs"
    query = _authorize(client, "/app/login", token_endpoint)
    assert client.get(f"/app/callback?code=the-code&state={query['state']}").status_code == 302
    assert client.get("/app/patient/p1").status_code == 403


def test_without_configuration_the_launch_says_what_is_missing(tmp_path: Path, idp: JwksServer) -> None:
    resp = _client(tmp_path, idp).get("/app/login")
    assert resp.status_code == 503
    assert "AUTH_AUTHORIZE_URL" in resp.get_json()["issue"][0]["diagnostics"]


def test_a_browser_without_a_token_is_sent_to_the_launch_and_a_script_gets_the_outcome(client: FlaskClient) -> None:
    browser = client.get("/app/patient/p1", headers={"Accept": "text/html,application/xhtml+xml"})
    assert browser.status_code == 302 and browser.headers["Location"].endswith("/app/login")
    script = client.get("/app/patient/p1", headers={"Accept": "application/fhir+json"})
    assert script.status_code == 401 and script.get_json()["resourceType"] == "OperationOutcome"
    assert client.get("/app/patient/nobody", headers={"Accept": "text/html"}).status_code == 302  # no token yet
