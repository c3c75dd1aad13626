"""Composition root of the dosimetry service (served by gunicorn: ``services.dosimetry.app:create_app()``)."""

from __future__ import annotations

from flask import Flask

from netliver.settings import Settings
from netliver.web import create_service_app
from services.dosimetry import __version__
from services.dosimetry.api import blueprint


def create_app(settings: Settings | None = None) -> Flask:
    return create_service_app("dosimetry", __version__, blueprint, settings)
