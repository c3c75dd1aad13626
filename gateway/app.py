"""Composition root of the gateway (served by gunicorn: ``gateway.app:create_app()``).

:func:`create_app` takes the settings and, optionally, the :class:`~gateway.deps.GatewayDeps`
(the FHIR store, the services' client, the job service and queue, the job database); without
them it builds the real ones (:func:`gateway.deps.build_deps`). It then wires authentication,
rate limiting and every blueprint around those dependencies. Nothing happens at import time.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask

from gateway.audit import init_audit
from gateway.auth import init_auth
from gateway.binary import create_binary_blueprint
from gateway.cds import create_cds_blueprint
from gateway.cds.client_auth import cds_verifier
from gateway.cors import init_cors
from gateway.deps import GatewayDeps, build_deps
from gateway.fhir_rest import create_fhir_rest_blueprint
from gateway.health import create_health_blueprint
from gateway.jobs.api import create_jobs_blueprint
from gateway.jobs.sweep import start_sweeper
from gateway.metadata import create_metadata_blueprint
from gateway.operations import create_operations_blueprint
from gateway.pacs_hook import create_hooks_blueprint
from gateway.ratelimit import init_rate_limit
from gateway.smart import create_smart_blueprint
from gateway.webapp import create_webapp_blueprint
from netliver import __version__
from netliver.edge import init_edge
from netliver.fhir.models import preload
from netliver.logs import configure_logging
from netliver.settings import Settings
from netliver.web import create_base_app

__all__ = ["create_app"]

_log = logging.getLogger("netliver.gateway")


def create_app(settings: Settings | None = None, *, deps: GatewayDeps | None = None) -> Flask:
    """The gateway app. ``settings`` default to the environment's; ``deps`` (whose settings are
    then used, and must be ``settings`` if both are given) default to the real parts."""
    if deps is not None and settings is not None and settings is not deps.settings:
        raise ValueError("create_app: deps were built with other settings than those given")
    settings = deps.settings if deps is not None else settings or Settings.from_env()
    configure_logging("gateway", settings.log_level, settings.log_format)
    preload()
    app = create_base_app("gateway", __version__, settings)
    deps = deps if deps is not None else build_deps(settings)
    app.extensions["netliver"] = {"deps": deps, "store": deps.store, "services": deps.services,
                                  "jobs": deps.jobs, "settings": settings}

    init_cors(app, settings)  # first: preflights are answered before authentication
    init_auth(app, settings, cds_verify=cds_verifier(settings) if settings.auth_mode == "jwt" else None)
    init_rate_limit(app, settings, prefix=settings.rate_limit_key_prefix)
    init_edge(app)  # after authentication: an anonymous caller's body is not parsed

    app.register_blueprint(create_health_blueprint(deps))
    app.register_blueprint(create_metadata_blueprint(deps))
    app.register_blueprint(create_operations_blueprint(deps))
    app.register_blueprint(create_jobs_blueprint(deps.jobs))
    app.register_blueprint(create_cds_blueprint(deps))
    app.register_blueprint(create_smart_blueprint(settings))
    app.register_blueprint(create_hooks_blueprint(deps))  # adds the catch-up cursor table
    init_audit(app, deps.database.engine, deps.database.metadata)
    deps.database.create_all()  # the job, cursor and audit tables, under the store's schema lock
    if settings.job_sweep_s > 0:
        start_sweeper(deps.jobs.jobs, deps.dispatcher, settings.job_sweep_s)
    prepare = getattr(deps.dispatcher, "prepare", None)  # the Celery dispatcher's; fakes have none
    if prepare is not None:  # beside the start, which a broker slow to answer must not hold up
        threading.Thread(target=prepare, name="job-queue-prepare", daemon=True).start()
    app.register_blueprint(create_binary_blueprint(deps.get_store))  # before the generic reads
    app.register_blueprint(create_fhir_rest_blueprint(deps.get_store, deps.fhir_base))
    app.register_blueprint(create_webapp_blueprint(deps.get_store, deps.fhir_base, settings))

    _log.info("gateway ready", extra={"store": type(deps.store).__name__, "auth": settings.auth_mode})
    return app
