"""HTTP boundary of the eligibility service: parse, call the domain, map to FHIR."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("eligibility", __name__)
