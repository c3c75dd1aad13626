"""Composition root of the dosimetry service (served by gunicorn: `services.dosimetry.app:create_app()`)."""

from __future__ import annotations

from flask import Flask, Response

from netliver.fhir.models import preload
from netliver.logs import configure_logging
from netliver.settings import Settings
from netliver.web import create_base_app, fhir_response
from services.dosimetry import __version__
from services.dosimetry.api import blueprint


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    configure_logging("dosimetry", settings.log_level, settings.log_format)
    preload()
    app = create_base_app("dosimetry", __version__, settings)
    app.register_blueprint(blueprint)

    @app.get("/health")
    def health() -> Response:
        return fhir_response({"status": "pass", "service": "dosimetry", "version": __version__})

    return app
