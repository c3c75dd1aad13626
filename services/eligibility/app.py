"""Composition root of the eligibility service (served by gunicorn: ``services.eligibility.app:create_app()``)."""

from __future__ import annotations

from flask import Flask

from netliver.settings import Settings
from netliver.web import create_service_app
from services.eligibility import __version__
from services.eligibility.api import blueprint


def create_app(settings: Settings | None = None) -> Flask:
    return create_service_app("eligibility", __version__, blueprint, settings)
