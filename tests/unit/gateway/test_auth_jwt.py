"""``gateway.auth`` mounted on a base app: tokens, scopes, exempt paths, JWKS, internal token.

The issuer is :class:`tests.support.jwks.JwksServer`, a real JWKS endpoint on loopback.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import jwt
import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient

from gateway.auth import (
    JwksCache,
    current_client_id,
    current_principal,
    init_auth,
    require_hook_auth,
    require_internal_token,
    require_scopes,
)
from netliver.settings import Settings
from netliver.web import create_base_app
from tests.support.jwks import AUDIENCE, ISSUER, JwksServer

pytestmark = pytest.mark.unit

#: The internal token the test gateway is configured with.
INTERNAL_TOKEN = "test-internal-secret-7f3a"
ELIGIBILITY = "/fhir/$evaluate-eligibility"


def jwt_settings(jwks_url: str, **changes: Any) -> Settings:
    return Settings(auth_mode="jwt", auth_jwks_url=jwks_url, auth_issuer=ISSUER,
                    auth_audience=AUDIENCE, internal_token=INTERNAL_TOKEN,
                    rate_limit_per_minute=0).with_(**changes)


def make_app(settings: Settings, jwks: JwksCache | None = None) -> Flask:
    """A base app with auth and dummy routes shaped like the gateway's."""
    app = create_base_app("gateway", "0", settings)
    init_auth(app, settings, jwks=jwks)

    def who() -> Any:
        principal = current_principal()
        return jsonify(kind=principal.kind if principal else None, client=current_client_id())

    @app.get("/health")
    def health() -> Any:
        return who()

    @app.get("/fhir/metadata")
    def metadata() -> Any:
        return who()

    @app.get("/fhir/Observation")
    def search_observations() -> Any:
        require_scopes(read=["Observation"])
        return who()

    @app.post(ELIGIBILITY)
    def evaluate() -> Any:
        require_scopes(read=["Patient", "Observation"], write=["Observation", "Provenance"])
        return who()

    @app.post("/internal/jobs/<job_id>/claim")
    def claim(job_id: str) -> Any:
        require_internal_token()
        return who()

    @app.post("/hooks/orthanc/stable-study")
    def stable_study() -> Any:
        require_hook_auth()
        return who()

    return app


@pytest.fixture(scope="module")
def client(idp: JwksServer) -> FlaskClient:
    return make_app(jwt_settings(idp.jwks_url)).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_401(resp: Any) -> None:
    assert resp.status_code == 401, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] in {"login", "security"}
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge


# -- accepted tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "RS384", "ES384"])
def test_each_algorithm_is_accepted(client: FlaskClient, idp: JwksServer, alg: str) -> None:
    resp = client.get("/fhir/Observation", headers=bearer(idp.mint("system/Observation.rs", alg=alg)))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"kind": "token", "client": "ris-integration"}


def test_audience_may_be_a_list(client: FlaskClient, idp: JwksServer) -> None:
    token = idp.mint("system/Observation.rs", aud=["https://other.test", AUDIENCE])
    assert client.get("/fhir/Observation", headers=bearer(token)).status_code == 200
    token = idp.mint("system/Observation.rs", aud=["https://other.test"])
    assert_401(client.get("/fhir/Observation", headers=bearer(token)))


@pytest.mark.parametrize("alg", ["RS256", "RS384", "ES384"])
def test_token_without_kid_is_checked_against_every_fitting_key(
        client: FlaskClient, idp: JwksServer, alg: str) -> None:
    token = idp.mint("system/Observation.rs", alg=alg, headers={"kid": None})
    assert "kid" not in jwt.get_unverified_header(token)
    assert client.get("/fhir/Observation", headers=bearer(token)).status_code == 200


def test_bearer_scheme_is_case_insensitive(client: FlaskClient, idp: JwksServer) -> None:
    token = idp.mint("system/Observation.rs")
    resp = client.get("/fhir/Observation", headers={"Authorization": f"bearer {token}"})
    assert resp.status_code == 200


@pytest.mark.parametrize(("claims", "client_id"), [
    ({}, "ris-integration"),
    ({"client_id": None, "azp": "pacs-bridge"}, "pacs-bridge"),
    ({"client_id": None, "sub": "only-sub"}, "only-sub"),
])
def test_client_id_from_claims(client: FlaskClient, idp: JwksServer,
                               claims: dict[str, Any], client_id: str) -> None:
    resp = client.get("/fhir/Observation", headers=bearer(idp.mint("system/*.read", **claims)))
    assert resp.get_json()["client"] == client_id


def test_leeway_accepts_small_clock_skew(client: FlaskClient, idp: JwksServer) -> None:
    now = int(time.time())
    just_expired = idp.mint("system/*.read", exp=now - 10)
    assert client.get("/fhir/Observation", headers=bearer(just_expired)).status_code == 200
    nearly_valid = idp.mint("system/*.read", nbf=now + 10)
    assert client.get("/fhir/Observation", headers=bearer(nearly_valid)).status_code == 200


# -- refused tokens ----------------------------------------------------------------------------


BAD_TOKENS = {
    "expired": lambda idp: idp.expired_token(),
    "expired beyond leeway": lambda idp: idp.mint(exp=int(time.time()) - 60),
    "not yet valid": lambda idp: idp.mint(nbf=int(time.time()) + 120),
    "issued in the future": lambda idp: idp.mint(iat=int(time.time()) + 120),
    "wrong audience": lambda idp: idp.wrong_audience_token(),
    "wrong issuer": lambda idp: idp.wrong_issuer_token(),
    "unpublished key, known kid": lambda idp: idp.unknown_key_token(),
    "unpublished key, unknown kid": lambda idp: idp.unknown_key_token(kid="never-published"),
    "alg none": lambda idp: idp.alg_none_token(),
    "HS256 with the public key": lambda idp: idp.hs256_public_key_token(),
    "payload tampered": lambda idp: idp.tampered_token(),
    "no exp": lambda idp: idp.mint(exp=None),
    "no aud": lambda idp: idp.mint(aud=None),
    "no iss": lambda idp: idp.mint(iss=None),
    "RS256 key used for RS384": lambda idp: idp.mint(alg="RS384", kid="rsa-256"),
    "ES384 under an RSA kid": lambda idp: idp.mint(
        alg="ES384", kid="rsa-384", key=idp.keys["ec-384"][0]),
    "RS384 under the EC kid": lambda idp: idp.mint(
        alg="RS384", kid="ec-384", key=idp.keys["rsa-384"][0]),
    "no kid, unpublished key": lambda idp: idp.mint(
        kid=None, key=idp.unpublished_key, headers={"kid": None}),
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_bad_token_is_401(client: FlaskClient, idp: JwksServer, name: str) -> None:
    token = BAD_TOKENS[name](idp)
    assert_401(client.get("/fhir/Observation", headers=bearer(token)))
    assert_401(client.post(ELIGIBILITY, headers=bearer(token)))


def test_key_type_decides_when_the_jwks_states_no_alg() -> None:
    """Without "alg" in the JWK, RS* tokens need an RSA key and ES384 a P-384 key."""
    with JwksServer(publish_alg=False) as issuer:
        assert all("alg" not in k for k in issuer.jwks()["keys"])
        http = make_app(jwt_settings(issuer.jwks_url)).test_client()
        for alg in ("RS256", "RS384", "ES384"):
            resp = http.get("/fhir/Observation", headers=bearer(issuer.mint(alg=alg)))
            assert resp.status_code == 200, alg
        # an RSA key without "alg" may sign RS256 or RS384
        rs384_on_rs256_key = issuer.mint(alg="RS384", kid="rsa-256")
        assert http.get("/fhir/Observation", headers=bearer(rs384_on_rs256_key)).status_code == 200
        for token in (issuer.mint(alg="RS384", kid="ec-384", key=issuer.keys["rsa-384"][0]),
                      issuer.mint(alg="ES384", kid="rsa-384", key=issuer.keys["ec-384"][0])):
            assert_401(http.get("/fhir/Observation", headers=bearer(token)))


@pytest.mark.parametrize("token", JwksServer.malformed_tokens())
def test_malformed_token_is_401(client: FlaskClient, token: str) -> None:
    assert_401(client.get("/fhir/Observation", headers=bearer(token)))


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz",
                                    "Bearer a b", "Token abc"])
def test_missing_or_wrong_authorization_header_is_401(client: FlaskClient,
                                                      header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = client.get("/fhir/Observation", headers=headers)
    assert_401(resp)
    assert resp.get_json()["issue"][0]["code"] == "login"


def test_expired_token_says_login(client: FlaskClient, idp: JwksServer) -> None:
    resp = client.get("/fhir/Observation", headers=bearer(idp.expired_token()))
    assert resp.get_json()["issue"][0]["code"] == "login"
    assert "expired" in resp.get_json()["issue"][0]["diagnostics"]


def test_oversized_token_is_401(client: FlaskClient, idp: JwksServer) -> None:
    token = idp.mint("system/*.read " + " ".join(f"system/T{i}.read" for i in range(2000)))
    assert len(token) > 16_384
    assert_401(client.get("/fhir/Observation", headers=bearer(token)))


# -- scopes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("scopes", "status"), [
    ("system/Observation.rs", 200),
    ("system/Observation.s", 200),
    ("system/Observation.read", 200),
    ("system/Observation.*", 200),
    ("system/*.*", 200),
    ("system/*.cruds", 200),
    ("system/*.read", 200),
    ("user/Observation.rs", 200),
    ("system/Observation.c", 403),
    ("system/Observation.write", 403),
    ("system/Patient.rs", 403),
    ("patient/Observation.rs", 403),
    ("system/Observation.rs?category=laboratory", 403),
    ("openid fhirUser", 403),
])
def test_read_scopes(client: FlaskClient, idp: JwksServer, scopes: str, status: int) -> None:
    resp = client.get("/fhir/Observation", headers=bearer(idp.mint(scopes)))
    assert resp.status_code == status, resp.get_data(as_text=True)


@pytest.mark.parametrize(("scopes", "status"), [
    ("system/Patient.rs system/Observation.rs system/Observation.c system/Provenance.c", 200),
    ("system/Patient.read system/Observation.* system/Provenance.write", 200),
    ("system/*.cruds", 200),
    ("system/*.*", 200),
    ("system/*.rs system/*.cu", 200),
    ("system/*.read", 403),
    ("system/*.rs", 403),
    ("system/Patient.rs system/Observation.cruds", 403),  # Provenance not writable
    ("system/Observation.cruds system/Provenance.c", 403),  # Patient not readable
])
def test_operation_scopes(client: FlaskClient, idp: JwksServer, scopes: str, status: int) -> None:
    resp = client.post(ELIGIBILITY, headers=bearer(idp.mint(scopes)))
    assert resp.status_code == status, resp.get_data(as_text=True)


def test_scopes_claim_as_list(client: FlaskClient, idp: JwksServer) -> None:
    token = idp.mint(["system/Observation.rs"])
    assert client.get("/fhir/Observation", headers=bearer(token)).status_code == 200


def test_403_names_the_missing_scope(client: FlaskClient, idp: JwksServer) -> None:
    token = idp.mint("system/Patient.rs system/Observation.rs system/Provenance.c")
    resp = client.post(ELIGIBILITY, headers=bearer(token))
    assert resp.status_code == 403
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in body["issue"]] == ["forbidden"]
    assert "needs system/Observation.c" in body["issue"][0]["diagnostics"]
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]


def test_403_lists_every_missing_type(client: FlaskClient, idp: JwksServer) -> None:
    resp = client.post(ELIGIBILITY, headers=bearer(idp.mint("system/Observation.rs")))
    diagnostics = [i["diagnostics"] for i in resp.get_json()["issue"]]
    assert len(diagnostics) == 3
    assert any("needs system/Patient.r" in d for d in diagnostics)
    assert any("needs system/Observation.c" in d for d in diagnostics)
    assert any("needs system/Provenance.c" in d for d in diagnostics)


# -- exempt paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/fhir/metadata"])
def test_exempt_paths_need_no_token(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.get_json() == {"kind": "anonymous", "client": None}


@pytest.mark.parametrize("path", ["/health/x", "/fhir/metadata2", "/fhir/Observation"])
def test_other_paths_are_not_exempt(client: FlaskClient, path: str) -> None:
    assert_401(client.get(path))


def test_unknown_path_is_401_before_404(client: FlaskClient) -> None:
    assert_401(client.get("/fhir/NoSuchType"))


# -- JWKS fetching -----------------------------------------------------------------------------


def test_jwks_endpoint_down_is_503(idp: JwksServer) -> None:
    app = make_app(jwt_settings(f"http://127.0.0.1:{closed_port()}/jwks.json"))
    resp = app.test_client().get("/fhir/Observation", headers=bearer(idp.mint("system/*.*")))
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "30"
    assert resp.get_json()["issue"][0]["code"] == "transient"
    assert "AUTH_JWKS_URL" in resp.get_json()["issue"][0]["diagnostics"]


def test_jwks_endpoint_error_is_503_and_recovers() -> None:
    with JwksServer() as issuer:
        clock = FakeClock()
        app = make_app(jwt_settings(issuer.jwks_url),
                       jwks=JwksCache(issuer.jwks_url, clock=clock))
        http = app.test_client()
        token = issuer.mint("system/*.*")
        issuer.status = 500
        assert http.get("/fhir/Observation", headers=bearer(token)).status_code == 503
        issuer.status = 200
        # The next attempt waits for the refetch interval: still 503 immediately...
        assert http.get("/fhir/Observation", headers=bearer(token)).status_code == 503
        clock.advance(11)
        assert http.get("/fhir/Observation", headers=bearer(token)).status_code == 200


def test_jwks_is_cached(idp: JwksServer) -> None:
    app = make_app(jwt_settings(idp.jwks_url))
    http = app.test_client()
    before = idp.requests
    for alg in ("RS256", "RS384", "ES384", "RS256"):
        assert http.get("/fhir/Observation", headers=bearer(idp.mint(alg=alg))).status_code == 200
    assert idp.requests - before == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_rotated_key_is_fetched_on_unknown_kid() -> None:
    with JwksServer() as issuer:
        clock = FakeClock()
        app = make_app(jwt_settings(issuer.jwks_url),
                       jwks=JwksCache(issuer.jwks_url, clock=clock))
        http = app.test_client()
        assert http.get("/fhir/Observation", headers=bearer(issuer.mint())).status_code == 200
        new_kid = issuer.rotate("ES384")
        clock.advance(11)  # past the least refetch interval, well inside the TTL
        token = issuer.mint(kid=new_kid)
        assert http.get("/fhir/Observation", headers=bearer(token)).status_code == 200
        assert issuer.requests == 2


def test_unknown_kid_flood_refetches_at_most_once_per_interval() -> None:
    with JwksServer() as issuer:
        clock = FakeClock()
        app = make_app(jwt_settings(issuer.jwks_url),
                       jwks=JwksCache(issuer.jwks_url, clock=clock, min_refetch_s=10))
        http = app.test_client()
        assert http.get("/fhir/Observation", headers=bearer(issuer.mint())).status_code == 200
        for i in range(20):
            token = issuer.unknown_key_token(kid=f"made-up-{i}")
            assert_401(http.get("/fhir/Observation", headers=bearer(token)))
            clock.advance(1)
        # 1 initial fetch + one refetch per 10 s over 20 s
        assert issuer.requests <= 3


def test_cached_keys_serve_while_issuer_is_down_until_too_stale() -> None:
    with JwksServer() as issuer:
        clock = FakeClock()
        cache = JwksCache(issuer.jwks_url, clock=clock, ttl_s=60, max_stale_s=600)
        http = make_app(jwt_settings(issuer.jwks_url), jwks=cache).test_client()
        token = issuer.mint(exp=int(time.time()) + 3600)
        assert http.get("/fhir/Observation", headers=bearer(token)).status_code == 200
        issuer.status = 503
        clock.advance(120)  # TTL passed: refetch fails, the cached keys still verify
        assert http.get("/fhir/Observation", headers=bearer(token)).status_code == 200
        # but an unknown kid cannot be decided while the issuer is down
        unknown = issuer.unknown_key_token(kid="published-during-outage")
        assert http.get("/fhir/Observation", headers=bearer(unknown)).status_code == 503
        clock.advance(600)  # beyond max_stale_s
        assert http.get("/fhir/Observation", headers=bearer(token)).status_code == 503


# -- internal token and the PACS hook ----------------------------------------------------------


def test_internal_endpoint_takes_the_internal_token(client: FlaskClient) -> None:
    resp = client.post("/internal/jobs/j1/claim", headers={"X-Internal-Token": INTERNAL_TOKEN})
    assert resp.status_code == 200
    assert resp.get_json() == {"kind": "internal", "client": "internal"}


@pytest.mark.parametrize("value", [None, "", "wrong", INTERNAL_TOKEN + "x", INTERNAL_TOKEN[:-1]])
def test_internal_endpoint_refuses_a_wrong_token(client: FlaskClient, value: str | None) -> None:
    headers = {} if value is None else {"X-Internal-Token": value}
    assert_401(client.post("/internal/jobs/j1/claim", headers=headers))


def test_internal_endpoint_refuses_a_jwt(client: FlaskClient, idp: JwksServer) -> None:
    assert_401(client.post("/internal/jobs/j1/claim", headers=bearer(idp.mint("system/*.*"))))


def test_internal_token_is_not_accepted_elsewhere(client: FlaskClient) -> None:
    assert_401(client.get("/fhir/Observation", headers={"X-Internal-Token": INTERNAL_TOKEN}))


@pytest.mark.parametrize(("headers", "status"), [
    ({"X-Internal-Token": INTERNAL_TOKEN}, 200),
    ({"X-Internal-Token": "wrong"}, 401),
    ("system/ImagingStudy.c", 200),
    ("system/ImagingStudy.cruds", 200),
    ("system/*.write", 200),
    ("system/ImagingStudy.write", 200),
    ("system/ImagingStudy.rs", 403),
    ("system/Observation.c", 403),
    ({}, 401),
])
def test_orthanc_hook(client: FlaskClient, idp: JwksServer, headers: Any, status: int) -> None:
    if isinstance(headers, str):
        headers = bearer(idp.mint(headers))
    resp = client.post("/hooks/orthanc/stable-study", headers=headers)
    assert resp.status_code == status, resp.get_data(as_text=True)


def test_hook_with_wrong_internal_token_is_401_even_with_a_good_jwt(
        client: FlaskClient, idp: JwksServer) -> None:
    headers = {**bearer(idp.mint("system/*.*")), "X-Internal-Token": "wrong"}
    assert_401(client.post("/hooks/orthanc/stable-study", headers=headers))


def test_empty_internal_token_setting_refuses_everything(idp: JwksServer) -> None:
    http = make_app(jwt_settings(idp.jwks_url, internal_token="")).test_client()
    assert_401(http.post("/internal/jobs/j1/claim", headers={"X-Internal-Token": ""}))


# -- AUTH_MODE=off and start-up checks ---------------------------------------------------------


def off_settings(**changes: Any) -> Settings:
    return Settings(auth_mode="off", internal_token=INTERNAL_TOKEN,
                    rate_limit_per_minute=0).with_(**changes)


def test_auth_off_lets_everyone_in_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="netliver.gateway.auth"):
        http = make_app(off_settings()).test_client()
    assert any("AUTH IS OFF" in r.getMessage() for r in caplog.records)
    assert http.get("/fhir/Observation").get_json() == {"kind": "auth-off", "client": None}
    assert http.post(ELIGIBILITY).status_code == 200
    assert http.post("/hooks/orthanc/stable-study").status_code == 200


def test_auth_off_still_guards_internal_endpoints() -> None:
    http = make_app(off_settings()).test_client()
    assert_401(http.post("/internal/jobs/j1/claim"))
    ok = http.post("/internal/jobs/j1/claim", headers={"X-Internal-Token": INTERNAL_TOKEN})
    assert ok.status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "gateway.hospital.test"])
def test_auth_off_refuses_a_public_bind(host: str) -> None:
    with pytest.raises(ValueError, match="ALLOW_INSECURE_AUTH_OFF"):
        make_app(off_settings(gateway_host=host))
    make_app(off_settings(gateway_host=host, allow_insecure_auth_off=True))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_auth_off_starts_on_loopback(host: str) -> None:
    make_app(off_settings(gateway_host=host))


def test_allow_insecure_flag_is_read_from_the_environment() -> None:
    env = {"AUTH_MODE": "off", "GATEWAY_HOST": "0.0.0.0", "ALLOW_INSECURE_AUTH_OFF": "1"}
    make_app(Settings.from_env(env))
    with pytest.raises(ValueError):
        make_app(Settings.from_env({"AUTH_MODE": "off", "GATEWAY_HOST": "0.0.0.0"}))


@pytest.mark.parametrize("missing", ["auth_jwks_url", "auth_issuer", "auth_audience"])
def test_jwt_mode_needs_its_settings(missing: str) -> None:
    settings = jwt_settings("http://127.0.0.1:1/jwks.json", **{missing: ""})
    with pytest.raises(ValueError, match=missing.upper()):
        make_app(settings)


def test_require_scopes_without_init_auth_is_refused() -> None:
    app = create_base_app("gateway", "0", off_settings())

    @app.get("/fhir/Observation")
    def search() -> Any:
        require_scopes(read=["Observation"])
        return {}

    assert app.test_client().get("/fhir/Observation").status_code == 401
