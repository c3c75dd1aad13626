"""The documented scopes of the Orthanc hook are the code's (one registry, ``gateway.scopes``)
and they work: a PACS bridge given exactly the documented set passes authorisation, and each
type left out is a 403 naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from gateway.scope_registry import ENDPOINTS, ORTHANC_HOOK, markdown_rows
from tests.support.jwks import JwksServer

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]
STUDY_ID = "27f7126f-4f66a63e-2fa1c4ca-73e1bd2c-3f6ec8d1"


def test_the_docs_rows_and_scope_sets_are_generated_from_the_registry() -> None:
    lines = (ROOT / "docs" / "auth.md").read_text().splitlines()
    for row in markdown_rows(ENDPOINTS):
        assert row in lines
    text = "\n".join(lines)
    for entry in ENDPOINTS:
        assert f"`{entry.scope_string()}`" in text


def test_the_orthanc_script_names_the_hooks_scopes() -> None:
    lua = (ROOT / "infra" / "orthanc" / "netliver.lua").read_text()
    assert ORTHANC_HOOK.scope_string() in lua
    assert "system/ImagingStudy.c)" not in lua


def test_the_documented_hook_scopes_pass_and_each_missing_type_is_named(jwt_client: FlaskClient, idp: JwksServer) -> None:
    documented = ORTHANC_HOOK.scope_string().split()
    resp = jwt_client.post("/hooks/orthanc/stable-study", json={"ID": STUDY_ID},
                       headers={"Authorization": f"Bearer {idp.mint(' '.join(documented))}"})
    assert resp.status_code == 503, resp.get_json()  # past authorisation: the PACS is not running
    for left_out in documented:
        rest = " ".join(s for s in documented if s != left_out)
        resp = jwt_client.post("/hooks/orthanc/stable-study", json={"ID": STUDY_ID},
                           headers={"Authorization": f"Bearer {idp.mint(rest)}"})
        assert resp.status_code == 403
        rtype = left_out.split("/")[1].split(".")[0]
        assert rtype in " ".join(i["diagnostics"] for i in resp.get_json()["issue"])
