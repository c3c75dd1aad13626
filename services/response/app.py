"""Composition root of the response service (served by gunicorn: ``services.response.app:create_app()``)."""

from __future__ import annotations

from flask import Flask

from netliver.settings import Settings
from netliver.web import create_service_app
from services.response import __version__
from services.response.api import blueprint


def create_app(settings: Settings | None = None) -> Flask:
    return create_service_app("response", __version__, blueprint, settings)
