"""A small FHIR REST client on ``requests``.

Used by the gateway to talk to an upstream FHIR server and by workers to report to the
gateway. Connection failures become ``FhirError`` 503 with ``Retry-After``; an upstream
OperationOutcome is relayed with its status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import requests

from netliver import sessions
from netliver.fhir.outcome import FhirError

__all__ = ["FHIR_JSON", "FhirClient"]

FHIR_JSON = "application/fhir+json"


class FhirClient:
    def __init__(self, base_url: str, *, token: str = "", timeout_s: float = 30.0,
                 headers: Mapping[str, str] | None = None, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or sessions.session()
        self.headers = {"Accept": FHIR_JSON, **(headers or {})}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, json_body: Any = None,
                params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
                ok: tuple[int, ...] = (200, 201)) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url}/{path.lstrip('/')}"
        hdrs = dict(self.headers)
        if json_body is not None:
            hdrs["Content-Type"] = FHIR_JSON
        hdrs.update(headers or {})
        try:
            resp = self.session.request(method, url, json=json_body, params=params, headers=hdrs,
                                        timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise FhirError(503, "transient", f"{self.base_url} is unreachable: {type(exc).__name__}",
                            headers={"Retry-After": "5"}) from exc
        if resp.status_code not in ok:
            raise relay_error(resp, self.base_url)
        return resp

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", f"{resource_type}/{resource_id}").json()
        return body

    def search(self, resource_type: str, params: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", resource_type, params=params).json()
        return body

    def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = self.request("POST", "", json_body=bundle).json()
        return body

    def post(self, path: str, body: Any, *, params: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None, ok: tuple[int, ...] = (200, 201, 202)) -> requests.Response:
        return self.request("POST", path, json_body=body, params=params, headers=headers, ok=ok)


def _issue_text(issue: Mapping[str, Any]) -> str:
    """An issue's words: ``diagnostics``, else ``details.text`` (where some servers put them)."""
    details = issue.get("details")
    text = details.get("text") if isinstance(details, Mapping) else None
    return str(issue.get("diagnostics") or text or "")


def relay_error(resp: requests.Response, origin: str) -> FhirError:
    """Turn a non-success answer into a ``FhirError`` keeping its status and issues."""
    from netliver.fhir.outcome import Issue

    status = resp.status_code
    if status in (401, 403, 407):
        # The dependency refused the gateway's own credentials (FHIR_UPSTREAM_TOKEN...): a fault
        # of the deployment, not of the caller, whose token the gateway has already accepted.
        return FhirError(502, "exception", f"{origin} refused the gateway's credentials (HTTP {status}); "
                         "check its token configuration")
    try:
        body = resp.json()
    except ValueError:
        body = None
    headers = {k: v for k, v in resp.headers.items() if k.lower() == "retry-after"}
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" and body.get("issue"):
        issues = [Issue(str(i.get("code", "processing")), _issue_text(i), tuple(i.get("expression", ())),
                        str(i.get("severity", "error")))
                  for i in body["issue"] if isinstance(i, dict)]
        if status >= 500 and status != 503:
            status = 502
        # The OperationOutcome is relayed whole (details, locations, extensions); the issues
        # above serve logs and callers that read FhirError.diagnostics.
        return dataclasses.replace(FhirError.from_issues(status, issues or [Issue("processing", "")], headers),
                                   relayed=body)
    if status >= 500:
        return FhirError(502 if status != 503 else 503, "transient",
                         f"{origin} answered {status}", headers=headers or {"Retry-After": "5"})
    return FhirError(status, "processing", f"{origin} answered {status}", headers=headers)
