"""docs/auth.md's "Scopes per operation" table is what the code checks: every operation row is
called with exactly the documented scopes (not refused) and with each documented type left out
(403 naming that type). A row that documents too much or too little fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from netliver.settings import Settings
from tests.support.jwks import JwksServer
from tests.support.jwt_gateway import jwt_gateway_env

DOC = Path(__file__).resolve().parents[3] / "docs" / "auth.md"
_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")
_ENDPOINT = re.compile(r"`(GET|POST|PUT|DELETE) (/[^`\s]+)`")


def _types(cell: str) -> tuple[str, ...] | None:
    """The resource types of a reads/writes cell; None when it is not a plain list of types."""
    text = re.sub(r"\(.*?\)", "", cell).strip()
    if text in ("—", ""):
        return ()
    names = tuple(part.strip() for part in text.split(","))
    return names if all(_TYPE.match(n) for n in names) else None


def documented_rows() -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """(method, path, reads, writes) of every operation row with plain type lists."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Scopes per operation", 1)[1]
    table = section[section.index("| endpoint"):].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        endpoint, reads, writes = (c.strip() for c in line.strip("|").split("|"))
        read_types, write_types = _types(reads), _types(writes)
        if read_types is None or write_types is None or not (read_types or write_types):
            continue
        for method, path in _ENDPOINT.findall(endpoint):
            rows.append((method, path.replace("{id}", "p1"), read_types, write_types))
    return rows


ROWS = documented_rows()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, idp: JwksServer) -> FlaskClient:
    tmp = tmp_path_factory.mktemp("scopes")
    settings = Settings.from_env(jwt_gateway_env(idp, tmp, REDIS_URL="redis://127.0.0.1:9/0"))
    return create_app(settings).test_client()


def _scopes(reads: tuple[str, ...], writes: tuple[str, ...]) -> list[str]:
    return [f"system/{t}.rs" for t in reads] + [f"system/{t}.cu" for t in writes]


def _call(client: FlaskClient, idp: JwksServer, method: str, path: str, scopes: list[str]) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {idp.mint(' '.join(scopes))}"}
    resp = client.open(path, method=method, json={"resourceType": "Parameters"} if method == "POST" else None,
                       headers=headers)
    body = resp.get_json(silent=True) or {}
    return resp.status_code, " ".join(i.get("diagnostics", "") for i in body.get("issue", []))


def test_the_table_documents_the_operations() -> None:
    paths = {path for _, path, _, _ in ROWS}
    assert {"/fhir/$evaluate-eligibility", "/fhir/Patient/p1/$evaluate-eligibility", "/fhir/$tumor-response",
            "/fhir/$sirt-activity", "/fhir/$voxel-dosimetry", "/fhir/Task/p1",
            "/hooks/orthanc/stable-study"} <= paths


@pytest.mark.parametrize(("method", "path", "reads", "writes"), ROWS, ids=[f"{m} {p}" for m, p, _, _ in ROWS])
def test_each_documented_scope_is_needed_and_together_they_suffice(
        client: FlaskClient, idp: JwksServer, method: str, path: str,
        reads: tuple[str, ...], writes: tuple[str, ...]) -> None:
    status, diagnostics = _call(client, idp, method, path, _scopes(reads, writes))
    assert status not in (401, 403), diagnostics
    for kind, types in (("reading", reads), ("writing", writes)):
        for rtype in types:
            scopes = _scopes(tuple(t for t in reads if kind != "reading" or t != rtype),
                             tuple(t for t in writes if kind != "writing" or t != rtype))
            status, diagnostics = _call(client, idp, method, path, scopes)
            assert status == 403 and f"{kind} {rtype} needs" in diagnostics, (rtype, status, diagnostics)
