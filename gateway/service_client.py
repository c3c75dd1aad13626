"""HTTP client of the internal services (docs/ARCHITECTURE.md, "Internal service protocol").

The gateway never imports a service package: it posts the caller's FHIR body to
``<service>/operations/<name>`` and receives ``{"output": ..., "write": [...]}``. A body the
gateway did not change is passed on as the bytes the caller sent (no re-serialising); the
service validates it. A service that
cannot be reached is a dependency down: ``FhirError`` 503 with ``Retry-After``. A service's own
OperationOutcome is relayed with its status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from netliver import sessions
from netliver.fhir.outcome import FhirError
from netliver.settings import Settings
from netliver.upstream import relay_error

__all__ = ["ServiceCaller", "ServiceClient", "ServiceResult", "service_urls"]


@dataclass(frozen=True)
class ServiceResult:
    output: dict[str, Any]
    write: list[dict[str, Any]]


class ServiceCaller(Protocol):
    """What the gateway asks of the services (:class:`ServiceClient` over HTTP, or a fake)."""

    def call(self, service: str, operation: str, body: Mapping[str, Any] | bytes | None,
             params: Mapping[str, str] | None = None, request_id: str = "") -> ServiceResult:
        """The service's ``{"output", "write"}`` answer; ``FhirError`` when it fails. ``body``:
        a JSON object, or the JSON text as bytes."""
        ...

    def call_json(self, service: str, operation: str, body: Mapping[str, Any] | bytes | None,
                  params: Mapping[str, str] | None = None, request_id: str = "") -> dict[str, Any]:
        """The JSON object the service answered; ``FhirError`` when it fails."""
        ...

    def health(self, service: str) -> dict[str, Any]:
        """``{"status": "pass" | "fail", ...}``."""
        ...


def service_urls(settings: Settings) -> dict[str, str]:
    return {
        "eligibility": settings.eligibility_url.rstrip("/"),
        "response": settings.response_url.rstrip("/"),
        "dosimetry": settings.dosimetry_url.rstrip("/"),
    }


class ServiceClient:
    """Calls the internal operations of the services over HTTP (one pooled session)."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.urls = service_urls(settings)
        self.timeout_s = settings.service_timeout_s
        # The services' operations compute and write nothing: a POST may be sent again.
        self.session = session or sessions.session({*sessions.IDEMPOTENT, "POST"})

    def call(self, service: str, operation: str, body: Mapping[str, Any] | bytes | None,
             params: Mapping[str, str] | None = None, request_id: str = "") -> ServiceResult:
        data = self.call_json(service, operation, body, params, request_id)
        try:
            output, write = data["output"], data.get("write", [])
        except (KeyError, TypeError) as exc:
            raise FhirError(502, "exception", f"the {service} service answered an unreadable result") from exc
        return ServiceResult(output=output, write=list(write))

    def call_json(self, service: str, operation: str, body: Mapping[str, Any] | bytes | None,
                  params: Mapping[str, str] | None = None, request_id: str = "") -> dict[str, Any]:
        """POST to ``/operations/<operation>`` and return the JSON object answered (``body`` as
        bytes is sent as it is)."""
        url = f"{self.urls[service]}/operations/{operation}"
        payload = {"data": bytes(body)} if isinstance(body, (bytes, bytearray)) else {"json": body}
        try:
            resp = self.session.post(url, **payload, params=params, timeout=self.timeout_s,
                                     headers={"Content-Type": "application/fhir+json",
                                              "X-Request-ID": request_id})
        except requests.RequestException as exc:
            raise FhirError(503, "transient", f"the {service} service is unavailable ({type(exc).__name__})",
                            headers={"Retry-After": "5"}) from exc
        if resp.status_code != 200:
            raise relay_error(resp, f"the {service} service")
        try:
            data = resp.json()
        except ValueError as exc:
            raise FhirError(502, "exception", f"the {service} service answered an unreadable result") from exc
        if not isinstance(data, dict):
            raise FhirError(502, "exception", f"the {service} service answered an unreadable result")
        return data

    def health(self, service: str) -> dict[str, Any]:
        try:
            resp = self.session.get(f"{self.urls[service]}/health", timeout=2)
            ok = resp.status_code == 200
            return {"status": "pass" if ok else "fail", "url": self.urls[service],
                    **({"version": resp.json().get("version")} if ok else {"httpStatus": resp.status_code})}
        except requests.RequestException as exc:
            return {"status": "fail", "url": self.urls[service], "detail": type(exc).__name__}
