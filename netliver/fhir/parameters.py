"""Reading a FHIR ``Parameters`` resource (FHIR R4 §2.1.28 Parameters)."""

from __future__ import annotations

from typing import Any

from netliver.fhir.outcome import FhirError

__all__ = ["parameters_of"]


def parameters_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``Parameters.parameter`` as a list of objects; 400 naming the element when it is not."""
    params = body.get("parameter")
    if params is None:
        return []
    if not isinstance(params, list):
        raise FhirError(400, "structure", "Parameters.parameter must be a list", "Parameters.parameter")
    for i, param in enumerate(params):
        if not isinstance(param, dict):
            raise FhirError(400, "structure", "each parameter must be an object", f"Parameters.parameter[{i}]")
    return params
