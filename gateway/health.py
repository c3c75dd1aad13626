"""``GET /health``: the gateway's store, job queue and services, and (reported only) the PACS."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import requests
from flask import Blueprint, Response

from netliver import __version__
from netliver.settings import Settings
from netliver.web import fhir_response

if TYPE_CHECKING:
    from gateway.deps import GatewayDeps

__all__ = ["create_health_blueprint"]

SERVICES = ("eligibility", "response", "dosimetry")


def _pacs_health(settings: Settings) -> dict[str, Any]:
    try:
        resp = requests.get(f"{settings.orthanc_url.rstrip('/')}/system", timeout=2,
                            auth=(settings.orthanc_user, settings.orthanc_password) if settings.orthanc_user else None)
        if resp.status_code == 200:
            return {"status": "pass", "url": settings.orthanc_url, "version": resp.json().get("Version")}
        return {"status": "warn", "url": settings.orthanc_url, "httpStatus": resp.status_code}
    except requests.RequestException as exc:
        return {"status": "warn", "url": settings.orthanc_url, "detail": type(exc).__name__}


def health_report(deps: GatewayDeps) -> tuple[dict[str, Any], bool]:
    """(the health body, whether the gateway passes)."""
    started = time.perf_counter()
    settings = deps.settings
    checks: dict[str, Any] = {"store": deps.store.health(), "broker": deps.dispatcher.ping()}
    for name in SERVICES:
        checks[name] = deps.services.health(name)
    passing = all(c.get("status") == "pass" for c in checks.values())
    # The PACS is reported but does not fail the gateway's health: without it only the
    # imaging jobs stop, and they fail with a clear reason.
    checks["pacs"] = _pacs_health(settings)
    body = {"status": "pass" if passing else "fail", "version": __version__, "authMode": settings.auth_mode,
            "store": "upstream" if settings.fhir_upstream_url else "embedded",
            "checks": checks, "ms": round((time.perf_counter() - started) * 1000, 1)}
    return body, passing


def create_health_blueprint(deps: GatewayDeps) -> Blueprint:
    bp = Blueprint("health", __name__)

    @bp.get("/health")
    def health() -> Response:
        body, passing = health_report(deps)
        return fhir_response(body, 200 if passing else 503, {} if passing else {"Retry-After": "10"})

    return bp
