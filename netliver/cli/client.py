"""The command line's HTTP side: one call to the gateway, its errors as exit codes.

Exit codes (scripts can rely on them):

=====  ==========================================================================
0      done; the result is printed
1      unexpected error (a bug: please report it with the output)
2      wrong usage (an unknown option, a missing file, a file that is not JSON)
3      the gateway refused the request (4xx OperationOutcome: invalid or unusable input,
       unknown resource, no or insufficient token)
4      the gateway or a service behind it is unavailable (no connection, 5xx, 503)
5      done, and the result says no: a contraindicated SIRT plan, a failed or cancelled job
=====  ==========================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

__all__ = ["EXIT_NO", "EXIT_REFUSED", "EXIT_UNAVAILABLE", "EXIT_USAGE", "CliError", "Gateway", "read_json_file"]

EXIT_USAGE, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_NO = 2, 3, 4, 5
FHIR_JSON = "application/fhir+json"


class CliError(Exception):
    """Stops the command with ``message`` and exit ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def read_json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from exc
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not JSON: {exc.msg} (line {exc.lineno})", EXIT_USAGE) from exc
    if not isinstance(data, dict) or "resourceType" not in data:
        raise CliError(f"{path} is not a FHIR resource (no resourceType)", EXIT_USAGE)
    return data


def _outcome_text(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    issues = body.get("issue") if isinstance(body, dict) else None
    if not issues:
        return json.dumps(body)[:300]
    parts = []
    for issue in issues:
        where = ", ".join(issue.get("expression") or [])
        parts.append(f"{issue.get('diagnostics', issue.get('code', ''))}{f' ({where})' if where else ''}")
    return "; ".join(parts)


@dataclass
class Gateway:
    """The gateway at ``url`` (its FHIR base is ``url/fhir``)."""

    url: str
    token: str | None = None
    timeout_s: float = 120.0

    @property
    def fhir(self) -> str:
        return f"{self.url.rstrip('/')}/fhir"

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON, **(extra or {})}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> requests.Response:
        """``method`` on ``<fhir base>/path``; a refusal or an outage becomes a :class:`CliError`."""
        url = path if path.startswith("http") else f"{self.fhir}/{path.lstrip('/')}"
        try:
            resp = requests.request(method, url, data=None if body is None else json.dumps(body), params=params,
                                    headers=self._headers(headers), timeout=self.timeout_s)
        except requests.ConnectionError as exc:
            raise CliError(f"cannot reach the gateway at {self.url} (is it running? `netliver serve`)",
                           EXIT_UNAVAILABLE) from exc
        except requests.Timeout as exc:
            raise CliError(f"the gateway at {self.url} did not answer in {self.timeout_s:g} s", EXIT_UNAVAILABLE) from exc
        if resp.status_code >= 500:
            raise CliError(f"{method} {url} → {resp.status_code}: {_outcome_text(resp)}", EXIT_UNAVAILABLE)
        if resp.status_code >= 400:
            raise CliError(f"{method} {url} → {resp.status_code}: {_outcome_text(resp)}", EXIT_REFUSED)
        return resp

    def post(self, path: str, body: dict[str, Any] | None, params: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> requests.Response:
        return self.call("POST", path, body, params, headers)

    def get(self, path: str) -> dict[str, Any]:
        found: dict[str, Any] = self.call("GET", path).json()
        return found
