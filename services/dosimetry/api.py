"""HTTP boundary of the dosimetry service: parse, call the domain, map to FHIR."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("dosimetry", __name__)
