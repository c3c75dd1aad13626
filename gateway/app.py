"""Composition root of the gateway (served by gunicorn: ``gateway.app:create_app()``).

Wires the FHIR store (embedded SQL or upstream), authentication and rate limiting, the
services' client, the job service and every blueprint. Nothing happens at import time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import requests
from flask import Flask, Response, request

from gateway.auth import init_auth
from gateway.cds import create_cds_blueprint
from gateway.fhir_rest import create_fhir_rest_blueprint
from gateway.hooks import create_hooks_blueprint
from gateway.jobs.api import JobService, create_jobs_blueprint
from gateway.jobs.dispatch import Dispatcher
from gateway.jobs.records import JobStore
from gateway.jobs.sweep import start_sweeper
from gateway.metadata import create_metadata_blueprint
from gateway.operations import create_operations_blueprint
from gateway.ratelimit import init_rate_limit
from gateway.services import ServiceClient
from gateway.store import make_store
from gateway.store.sql import SqlStore
from gateway.webapp import create_webapp_blueprint
from netliver import __version__
from netliver.fhir.models import preload
from netliver.logs import configure_logging
from netliver.settings import Settings
from netliver.web import create_base_app, fhir_response

__all__ = ["create_app"]


def _pacs_health(settings: Settings) -> dict[str, Any]:
    try:
        resp = requests.get(f"{settings.orthanc_url.rstrip('/')}/system", timeout=2,
                            auth=(settings.orthanc_user, settings.orthanc_password) if settings.orthanc_user else None)
        if resp.status_code == 200:
            return {"status": "pass", "url": settings.orthanc_url, "version": resp.json().get("Version")}
        return {"status": "warn", "url": settings.orthanc_url, "httpStatus": resp.status_code}
    except requests.RequestException as exc:
        return {"status": "warn", "url": settings.orthanc_url, "detail": type(exc).__name__}

_log = logging.getLogger("netliver.gateway")


def _sql_store(store: Any, settings: Settings) -> SqlStore:
    """The SQL database of the job records: the embedded store's, or (upstream mode) its own."""
    return store if isinstance(store, SqlStore) else SqlStore(settings.database_url)


def create_app(settings: Settings | None = None, *, store: Any = None) -> Flask:
    settings = settings or Settings.from_env()
    configure_logging("gateway", settings.log_level, settings.log_format)
    preload()
    app = create_base_app("gateway", __version__, settings)
    store = store if store is not None else make_store(settings)
    services = ServiceClient(settings)
    dispatcher = Dispatcher(settings)

    def base_url_of() -> str:
        root = settings.public_base_url or request.url_root
        return root.rstrip("/") + "/fhir"

    sql = _sql_store(store, settings)
    jobs = JobService(jobs=JobStore(sql.engine, sql.metadata), store=store, dispatcher=dispatcher,
                      base_url_of=base_url_of, lease_s=settings.job_lease_s)
    app.extensions["netliver"] = {"store": store, "services": services, "jobs": jobs, "settings": settings}

    init_auth(app, settings)
    init_rate_limit(app, settings, prefix=settings.rate_limit_key_prefix)

    app.register_blueprint(create_metadata_blueprint(base_url_of, lambda: settings.auth_mode))
    app.register_blueprint(create_operations_blueprint(lambda: store, lambda: services, base_url_of))
    app.register_blueprint(create_jobs_blueprint(lambda: jobs))
    app.register_blueprint(create_cds_blueprint(lambda: store, lambda: services, base_url_of))
    app.register_blueprint(create_hooks_blueprint(settings, lambda: store, lambda: jobs, base_url_of, sql.metadata))
    sql.create_all()  # the job and cursor tables, under the store's schema lock
    if settings.job_sweep_s > 0:
        start_sweeper(jobs.jobs, dispatcher, settings.job_sweep_s)
    app.register_blueprint(create_fhir_rest_blueprint(lambda: store, base_url_of))
    app.register_blueprint(create_webapp_blueprint(lambda: store, base_url_of))

    @app.get("/health")
    def health() -> Response:
        started = time.perf_counter()
        checks: dict[str, Any] = {"store": store.health(), "broker": dispatcher.ping()}
        for name in ("eligibility", "response", "dosimetry"):
            checks[name] = services.health(name)
        status = "pass" if all(c.get("status") == "pass" for c in checks.values()) else "fail"
        # The PACS is reported but does not fail the gateway's health: without it only the
        # imaging jobs stop, and they fail with a clear reason.
        checks["pacs"] = _pacs_health(settings)
        body = {"status": status, "version": __version__, "authMode": settings.auth_mode,
                "store": "upstream" if settings.fhir_upstream_url else "embedded",
                "checks": checks, "ms": round((time.perf_counter() - started) * 1000, 1)}
        return fhir_response(body, 200 if status == "pass" else 503,
                             {} if status == "pass" else {"Retry-After": "10"})

    _log.info("gateway ready", extra={"store": type(store).__name__, "auth": settings.auth_mode})
    return app
