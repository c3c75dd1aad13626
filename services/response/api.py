"""HTTP boundary of the response service: parse, call the domain, map to FHIR."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("response", __name__)
