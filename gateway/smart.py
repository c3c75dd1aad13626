"""``/.well-known/smart-configuration`` (HL7 SMART App Launch 2.x, "Conformance": the
authorization server's metadata, fetched by clients before they ask it for a token).

Public, like ``/fhir/metadata``. It describes the issuer whose tokens the gateway accepts:
``issuer`` = ``AUTH_ISSUER``, ``jwks_uri`` = ``AUTH_JWKS_URL``, ``token_endpoint`` =
``AUTH_TOKEN_URL`` and, when ``AUTH_AUTHORIZE_URL`` is set, ``authorization_endpoint`` (then the
authorization-code grant with PKCE S256 as well). ``scopes_supported`` is :func:`supported_scopes`,
the scopes the gateway's checks (``gateway.auth``) honour. Without ``AUTH_MODE=jwt`` and
``AUTH_TOKEN_URL`` there is no authorization server to describe: 404.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from gateway.compartment import COMPARTMENT_TYPES
from gateway.metadata import RESOURCE_TYPES
from netliver.fhir.outcome import FhirError
from netliver.settings import Settings
from netliver.web import fhir_response

__all__ = ["SMART_PATH", "create_smart_blueprint", "smart_configuration", "supported_scopes"]

SMART_PATH = "/.well-known/smart-configuration"
#: Types read by the operations beyond the REST resource types.
_READ_ONLY_TYPES = ("CodeSystem", "OperationDefinition")


def supported_scopes() -> list[str]:
    """``system/`` scopes the gateway honours: v2 ``rs`` (read, search), ``cu`` (create, update
    — results are written with PUT) and ``cruds``, v1 ``read``/``write``/``*``, per type and ``*``;
    ``user/`` alike; ``patient/`` ``rs``/``cruds`` for the Patient compartment's types (confined
    to the token's patient, see :mod:`gateway.compartment`)."""
    scopes: list[str] = []
    for context in ("system", "user"):
        for rtype in ("*", *RESOURCE_TYPES):
            scopes += [f"{context}/{rtype}.rs", f"{context}/{rtype}.cu", f"{context}/{rtype}.cruds",
                       f"{context}/{rtype}.read", f"{context}/{rtype}.write", f"{context}/{rtype}.*"]
        for rtype in _READ_ONLY_TYPES:
            scopes += [f"{context}/{rtype}.rs", f"{context}/{rtype}.read"]
    for rtype in ("*", "Patient", *COMPARTMENT_TYPES):
        scopes += [f"patient/{rtype}.rs", f"patient/{rtype}.cruds", f"patient/{rtype}.read"]
    return scopes


def smart_configuration(settings: Settings) -> dict[str, Any] | None:
    """The document, or None when no authorization server is configured."""
    if settings.auth_mode != "jwt" or not settings.auth_token_url:
        return None
    doc: dict[str, Any] = {
        "issuer": settings.auth_issuer,
        "jwks_uri": settings.auth_jwks_url,
        "token_endpoint": settings.auth_token_url,
        "grant_types_supported": ["client_credentials"],
        # SMART Backend Services: asymmetric client authentication, RS384 and ES384 required.
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": supported_scopes(),
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }
    if settings.auth_authorize_url:
        doc["authorization_endpoint"] = settings.auth_authorize_url
        doc["grant_types_supported"].append("authorization_code")
        doc["response_types_supported"] = ["code"]
        doc["code_challenge_methods_supported"] = ["S256"]
        # the page (gateway/webapp/smart.py): a public client launched by the EHR or on its own
        doc["capabilities"] += ["launch-ehr", "launch-standalone", "client-public", "context-ehr-patient",
                                "context-standalone-patient", "permission-patient", "permission-user"]
    return doc


def create_smart_blueprint(settings: Settings) -> Blueprint:
    bp = Blueprint("smart", __name__)

    @bp.get(SMART_PATH)
    def smart_config() -> Response:
        doc = smart_configuration(settings)
        if doc is None:
            raise FhirError(404, "not-found", "no authorization server is configured (AUTH_MODE=jwt and "
                            "AUTH_TOKEN_URL describe it)")
        return fhir_response(doc, headers={"Cache-Control": "public, max-age=300"})

    return bp
