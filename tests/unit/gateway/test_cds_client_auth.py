"""The CDS client JWT check on its own (CDS Hooks 2.0 "Trusting CDS Clients"): key rotation at
the EHR, the ``jku`` allow list, the five-minute lifetime boundary, ``jti`` replay in Redis and a
Redis outage, and ``CDS_CLIENTS`` parsing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import redis

from gateway.auth import JwksCache
from gateway.cds.client_auth import (
    CdsClient,
    CdsClientVerifier,
    RedisJtiStore,
    parse_cds_clients,
)
from netliver.fhir.outcome import FhirError
from tests.support.cds_client import CdsClientSim

AUD = "https://netliver.hospital.test/cds-services/liver-directed-therapy"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def ehr() -> Iterator[CdsClientSim]:
    with CdsClientSim() as client:
        yield client


def _verifier(ehr: CdsClientSim, redis_url: str = REDIS_URL) -> CdsClientVerifier:
    return CdsClientVerifier([CdsClient(ehr.issuer, ehr.keys.jwks_url)], RedisJtiStore.from_url(redis_url),
                             jwks_factory=lambda url: JwksCache(url, min_refetch_s=0.0))


def _refused(verifier: CdsClientVerifier, token: str) -> FhirError:
    with pytest.raises(FhirError) as err:
        verifier.verify(token, [AUD])
    return err.value


def test_a_key_the_ehr_publishes_after_the_first_fetch_is_found_by_refetching(ehr: CdsClientSim) -> None:
    verifier = _verifier(ehr)
    assert verifier.verify(ehr.token(AUD), [AUD]).tenant == "hospital-a"
    fetches = ehr.keys.requests
    kid = ehr.keys.rotate("ES384")
    key, _ = ehr.keys.keys[kid]
    now = int(time.time())
    rotated = jwt.encode({"iss": ehr.issuer, "aud": AUD, "iat": now, "exp": now + 60, "jti": f"rot-{now}-{kid}"},
                         key, algorithm="ES384", headers={"kid": kid, "typ": "JWT"})
    principal = verifier.verify(rotated, [AUD])
    assert principal.kind == "cds-client" and principal.client_id == ehr.issuer
    assert ehr.keys.requests == fetches + 1  # fetched again once, for the unknown kid


def test_a_jku_other_than_the_configured_jwks_is_refused_without_fetching_it(ehr: CdsClientSim) -> None:
    verifier = _verifier(ehr)
    key, _ = ehr.keys.keys["ec-384"]
    now = int(time.time())
    token = jwt.encode({"iss": ehr.issuer, "aud": AUD, "iat": now, "exp": now + 60, "jti": f"jku-{now}"}, key,
                       algorithm="ES384", headers={"kid": "ec-384", "jku": "https://attacker.test/jwks.json"})
    err = _refused(verifier, token)
    assert err.status == 401 and "jku" in err.diagnostics
    same = jwt.encode({"iss": ehr.issuer, "aud": AUD, "iat": now, "exp": now + 60, "jti": f"jku-ok-{now}"}, key,
                      algorithm="ES384", headers={"kid": "ec-384", "jku": ehr.keys.jwks_url})
    assert verifier.verify(same, [AUD]).client_id == ehr.issuer


def test_lifetime_boundary_and_replay(ehr: CdsClientSim) -> None:
    verifier = _verifier(ehr)
    assert verifier.verify(ehr.token(AUD, lifetime_s=300), [AUD])
    assert "at most 300 s" in _refused(verifier, ehr.token(AUD, lifetime_s=301)).diagnostics
    token = ehr.token(AUD)
    verifier.verify(token, [AUD])
    assert "replay" in _refused(_verifier(ehr), token).diagnostics  # another process, the same Redis
    # this token's own key (keys of earlier runs under the same issuer may be expiring meanwhile)
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    [key] = list(redis.Redis.from_url(REDIS_URL).scan_iter(f"netliver:cds-jti:{ehr.issuer}|{jti}*"))
    assert 0 < redis.Redis.from_url(REDIS_URL).ttl(key) <= 331


def test_redis_down_is_503_not_an_unchecked_replay(ehr: CdsClientSim) -> None:
    err = _refused(_verifier(ehr, "redis://127.0.0.1:9/0"), ehr.token(AUD))
    assert err.status == 503 and err.headers.get("Retry-After")


def test_cds_clients_is_a_list_or_a_file(tmp_path: Path) -> None:
    entries = [{"iss": "https://ehr-a.test/", "jwks_url": "https://ehr-a.test/jwks"}]
    assert parse_cds_clients(json.dumps(entries)) == (CdsClient("https://ehr-a.test/", "https://ehr-a.test/jwks"),)
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(entries))
    assert parse_cds_clients(str(path)) == parse_cds_clients(json.dumps(entries))
    assert parse_cds_clients("  ") == ()
    for bad in ('{"iss": "x"}', '[{"iss": "x", "jwks_url": "ftp://x"}]', "[1]", "/no/such/file.json",
                json.dumps(entries * 2), "[not json"):
        with pytest.raises(ValueError, match="CDS_CLIENTS"):
            parse_cds_clients(bad)
