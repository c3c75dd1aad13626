"""Errors at the HTTP edge of a real gunicorn gateway are OperationOutcomes with honest statuses:
a bearer token up to the documented 16,384 characters reaches authentication (401 when invalid,
not gunicorn's HTML 431), URLs and headers over the limits get 414/431 OperationOutcomes, a
malformed chunked body is a 400, and the access log holds no query values (patient data)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from infra.stack import Stack, StackConfig, free_port
from tests.support.jwks import JwksServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    tmp = tmp_path_factory.mktemp("edge")
    with JwksServer() as idp:
        stack = Stack(StackConfig.ephemeral(tmp))
        try:
            url = stack.start_gateway("gateway-edge", free_port(), {
                "AUTH_MODE": "jwt", "AUTH_JWKS_URL": idp.jwks_url, "AUTH_ISSUER": idp.issuer,
                "AUTH_AUDIENCE": idp.audience, "INTERNAL_TOKEN": "a-long-test-secret-for-the-workers",
                "ORTHANC_CATCHUP_S": "0", "JOB_SWEEP_S": "0", "RATE_LIMIT_PER_MINUTE": "0"})
            yield stack, url
        finally:
            stack.stop()


def _outcome(resp: requests.Response) -> dict[str, object]:
    assert resp.headers["Content-Type"].startswith("application/fhir+json"), resp.text[:200]
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize("length", [8_200, 16_384])
def test_a_long_token_within_the_documented_limit_reaches_authentication(gateway: tuple[Stack, str], length: int) -> None:
    _, url = gateway
    resp = requests.get(f"{url}/fhir/Patient", headers={"Authorization": "Bearer " + "a" * length}, timeout=10)
    assert resp.status_code == 401
    _outcome(resp)


def test_an_over_long_token_is_a_401(gateway: tuple[Stack, str]) -> None:
    _, url = gateway
    resp = requests.get(f"{url}/fhir/Patient", headers={"Authorization": "Bearer " + "a" * 16_385}, timeout=10)
    assert resp.status_code == 401
    _outcome(resp)


def test_over_long_urls_and_headers_are_operation_outcomes(gateway: tuple[Stack, str]) -> None:
    _, url = gateway
    resp = requests.get(f"{url}/fhir/Patient?name={'x' * 17_000}", timeout=10)
    assert resp.status_code == 414
    _outcome(resp)
    resp = requests.get(f"{url}/fhir/Patient", headers={"X-Padding": "x" * 40_000}, timeout=10)
    assert resp.status_code == 431
    _outcome(resp)


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_malformed_chunked_body_is_a_400_operation_outcome(gateway: tuple[Stack, str]) -> None:
    _, url = gateway
    answer = _raw(url, b"POST /hooks/orthanc/stable-study HTTP/1.1\r\nHost: x\r\n"
                       b"X-Internal-Token: a-long-test-secret-for-the-workers\r\n"
                       b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       b"zz\r\n{}\r\n0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b'"OperationOutcome"' in body


def test_the_access_log_holds_no_query_values(gateway: tuple[Stack, str], tmp_path: Path) -> None:
    stack, url = gateway
    requests.get(f"{url}/fhir/Patient?identifier=urn:mrn|MRN-7730141&name=Quetzalcoatl&birthdate=1931-02-03",
                 timeout=10)
    requests.get(f"{url}/fhir/Patient?name={'Quetzalcoatl' * 2000}", timeout=10)
    log = stack.log("gateway-edge")
    assert "/fhir/Patient" in log
    for secret in ("MRN-7730141", "Quetzalcoatl", "1931-02-03"):
        assert secret not in log
