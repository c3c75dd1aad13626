"""The page as a SMART on FHIR app (HL7 SMART App Launch 2.x, "App Launch: Launch and
Authorization"): EHR launch (``/app/launch?iss=…&launch=…``) and standalone launch
(``/app/login``), both the authorization-code flow with PKCE S256 (RFC 7636) against the
configured authorization server.

The code is exchanged at ``AUTH_TOKEN_URL`` by the gateway, the access token is verified like
any bearer token (issuer, audience, signature, expiry) and kept in the signed, HttpOnly session
cookie; page requests then carry it as if it were their ``Authorization`` header, so the user's
own scopes decide what the page may read. The patient comes from the token response's
``patient`` launch context. An EHR launch asks for ``patient/`` scopes: the page then shows
that patient only (:mod:`gateway.auth` confines ``patient/`` scopes to the launch's patient).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import requests
from flask import Blueprint, redirect, request, session, url_for
from werkzeug.wrappers import Response

from gateway.auth import SESSION_KEY, verify_bearer
from netliver.fhir.outcome import FhirError
from netliver.settings import Settings

__all__ = ["APP_SCOPES", "EHR_SCOPES", "add_launch_views", "launch_configured", "pkce_pair"]

#: What the page asks for when started on its own: to read patients' records as the user (SMART
#: v2 scopes), the board going from patient to patient, and a patient picked at the launch.
APP_SCOPES = ("openid fhirUser launch/patient user/Patient.rs user/Observation.rs "
              "user/DiagnosticReport.rs user/BodyStructure.rs")
#: What it asks for when the EHR launches it on a patient's chart: that patient's record only.
EHR_SCOPES = ("openid fhirUser launch patient/Patient.rs patient/Observation.rs "
              "patient/DiagnosticReport.rs patient/BodyStructure.rs")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) of RFC 7636 §4.1-4.2."""
    verifier = _b64url(secrets.token_bytes(32))
    return verifier, _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _missing(settings: Settings) -> list[str]:
    return [env for env, value in (("AUTH_AUTHORIZE_URL", settings.auth_authorize_url),
                                   ("AUTH_TOKEN_URL", settings.auth_token_url),
                                   ("APP_CLIENT_ID", settings.app_client_id),
                                   ("APP_SESSION_SECRET", settings.app_session_secret)) if not value]


def launch_configured(settings: Settings) -> bool:
    """True when the SMART launch can run (``AUTH_MODE=jwt`` and its four settings)."""
    return settings.auth_mode == "jwt" and not _missing(settings)


def _configured(settings: Settings) -> None:
    missing = _missing(settings)
    if settings.auth_mode != "jwt":
        raise FhirError(404, "not-supported", "the SMART launch is for AUTH_MODE=jwt; the page is open")
    if missing:
        raise FhirError(503, "not-supported", f"the SMART app launch is not configured: set {', '.join(missing)}",
                        headers={"Retry-After": "3600"})


def add_launch_views(bp: Blueprint, settings: Settings, fhir_base: Callable[[], str]) -> None:
    """Register the launch, login and callback views on the page's blueprint."""

    def authorize(launch: str | None) -> Response:
        _configured(settings)
        verifier, challenge = pkce_pair()
        state = _b64url(secrets.token_bytes(16))
        session[SESSION_KEY] = {"state": state, "verifier": verifier}
        query = {"response_type": "code", "client_id": settings.app_client_id,
                 "redirect_uri": url_for("webapp.callback", _external=True),
                 "scope": EHR_SCOPES if launch else APP_SCOPES,
                 "state": state, "aud": fhir_base(), "code_challenge": challenge,
                 "code_challenge_method": "S256", **({"launch": launch} if launch else {})}
        return redirect(f"{settings.auth_authorize_url}?{urlencode(query)}", code=302)

    @bp.get("/launch")
    def launch() -> Response:
        iss, launch_id = request.args.get("iss", ""), request.args.get("launch", "")
        if not iss or not launch_id:
            raise FhirError(400, "required", "an EHR launch needs 'iss' and 'launch'", "iss" if not iss else "launch")
        if iss.rstrip("/") != fhir_base().rstrip("/"):
            raise FhirError(400, "invalid", f"iss {iss!r} is not this FHIR server ({fhir_base()})", "iss")
        return authorize(launch_id)

    @bp.get("/login")
    def login() -> Response:
        return authorize(None)

    @bp.get("/callback")
    def callback() -> Response:
        _configured(settings)
        pending = session.pop(SESSION_KEY, None) or {}
        if request.args.get("error"):
            raise FhirError(401, "login", f"the authorization server refused: {request.args.get('error')} "
                                          f"{request.args.get('error_description', '')}".strip())
        state, code = request.args.get("state", ""), request.args.get("code", "")
        if not pending.get("state") or not secrets.compare_digest(state, str(pending["state"])):
            raise FhirError(401, "login", "the launch's state does not match (start again at /app/login)", "state")
        if not code:
            raise FhirError(400, "required", "the authorization server sent no code", "code")
        answer = _exchange(settings, code, str(pending["verifier"]), url_for("webapp.callback", _external=True))
        token = str(answer.get("access_token", ""))
        verify_bearer(token)  # a token the gateway would refuse is never kept
        lifetime = float(answer.get("expires_in", 300))
        patient = str(answer.get("patient", ""))
        session[SESSION_KEY] = {"access_token": token, "patient": patient, "expires_at": time.time() + lifetime}
        target = url_for("webapp.patient_page", patient_id=patient) if patient else url_for("webapp.find_patient")
        return redirect(target, code=302)


def _exchange(settings: Settings, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
    """The token request of the authorization-code grant with the PKCE verifier (public client)."""
    try:
        resp = requests.post(settings.auth_token_url, timeout=settings.service_timeout_s, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": settings.app_client_id, "code_verifier": verifier}, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise FhirError(503, "transient", f"the token endpoint cannot be reached: {type(exc).__name__}",
                        headers={"Retry-After": "10"}) from exc
    if resp.status_code != 200:
        raise FhirError(401, "login", f"the token endpoint refused the code ({resp.status_code})")
    body = resp.json()
    if not isinstance(body, dict) or not body.get("access_token"):
        raise FhirError(502, "exception", "the token endpoint answered no access_token")
    return body
