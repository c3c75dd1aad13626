"""Reading what the prefetch left out from the CDS client's own FHIR server.

CDS Hooks 2.0, "FHIR Resource Access": with ``fhirServer`` (and ``fhirAuthorization``, an OAuth
2.0 bearer token issued for this service) the service may read the data it needs itself. Only
``GET`` is ever sent; each request has a timeout; search results are read page by page following
``next`` links (FHIR R4 §3.1.1.5.6 paging), but only links on the same origin as ``fhirServer``
(the token is never sent elsewhere) and at most :data:`MAX_PAGES` pages per key. The keys are
fetched in parallel: the client waits for the card.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from gateway.cds.prefetch import PrefetchKey, foreign_patient, search_entries
from netliver.fhir.outcome import FhirError

__all__ = ["MAX_PAGES", "EhrFhirServer", "EhrUnavailable", "fhir_server_of"]

MAX_PAGES = 20
FHIR_JSON = "application/fhir+json"


class EhrUnavailable(Exception):
    """A key could not be read from the CDS client's FHIR server (the message says why)."""


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def fhir_server_of(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``fhirServer`` and the ``fhirAuthorization`` access token of a call; 400 when malformed.

    CDS Hooks 2.0: ``fhirAuthorization`` requires ``fhirServer``; its ``token_type`` is
    ``Bearer``."""
    server = body.get("fhirServer")
    auth = body.get("fhirAuthorization")
    if server is None:
        if auth is not None:
            raise FhirError(400, "required", "fhirAuthorization is given without fhirServer", "fhirServer")
        return None, None
    if not isinstance(server, str) or urlsplit(server).scheme not in ("http", "https") or not urlsplit(server).netloc \
            or "@" in urlsplit(server).netloc:
        raise FhirError(400, "value", "fhirServer must be an http(s) URL without credentials", "fhirServer")
    if auth is None:
        return server.rstrip("/"), None
    token = auth.get("access_token") if isinstance(auth, dict) else None
    if not isinstance(token, str) or not token:
        raise FhirError(400, "required", "fhirAuthorization.access_token is required", "fhirAuthorization.access_token")
    token_type = auth.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise FhirError(400, "value", "fhirAuthorization.token_type must be Bearer", "fhirAuthorization.token_type")
    return server.rstrip("/"), token


@dataclass
class EhrFhirServer:
    """Read-only access to a CDS client's FHIR server for the duration of one call."""

    base_url: str
    token: str | None
    timeout_s: float
    session: requests.Session

    def _get(self, url: str, what: str) -> dict[str, Any]:
        headers = {"Accept": FHIR_JSON}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            resp = self.session.get(url, headers=headers, timeout=self.timeout_s, allow_redirects=False)
        except requests.RequestException as exc:
            raise EhrUnavailable(f"{what}: the EHR's FHIR server cannot be reached ({type(exc).__name__})") from None
        if resp.status_code in (401, 403):
            raise EhrUnavailable(f"{what}: the EHR's FHIR server refused the fhirAuthorization token "
                                 f"(HTTP {resp.status_code})")
        if resp.status_code != 200:
            raise EhrUnavailable(f"{what}: the EHR's FHIR server answered HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            raise EhrUnavailable(f"{what}: the EHR's FHIR server did not answer JSON") from None
        if not isinstance(body, dict):
            raise EhrUnavailable(f"{what}: the EHR's FHIR server did not answer a FHIR resource")
        return body

    def fetch(self, spec: PrefetchKey, patient_id: str) -> list[dict[str, Any]]:
        """The resources of one key (its template against this server, every page)."""
        url: str | None = f"{self.base_url}/{spec.query(patient_id)}"
        what = f"{spec.key} ({spec.query(patient_id)})"
        if spec.is_read:
            assert url is not None
            body = self._get(url, what)
            if body.get("resourceType") != spec.resource_type:
                raise EhrUnavailable(f"{what}: the EHR's FHIR server answered a {body.get('resourceType')}")
            resources = [body]
        else:
            resources = []
            pages = 0
            while url is not None:
                pages += 1
                if pages > MAX_PAGES:
                    raise EhrUnavailable(f"{what}: more than {MAX_PAGES} pages")
                body = self._get(url, what)
                if body.get("resourceType") != "Bundle":
                    raise EhrUnavailable(f"{what}: the EHR's FHIR server answered a {body.get('resourceType')}, "
                                         "not a Bundle")
                found, problem = search_entries({**body, "link": []}, spec.resource_type, spec.key)
                if problem is not None:
                    raise EhrUnavailable(f"{what}: {problem}")
                resources.extend(found)
                url = self._next(body, what)
        for res in resources:
            other = foreign_patient(res, patient_id)
            if other is not None:
                raise EhrUnavailable(f"{what}: the EHR's FHIR server answered data of Patient/{other}")
        return resources

    def _next(self, bundle: Mapping[str, Any], what: str) -> str | None:
        links = bundle.get("link", [])
        for link in links if isinstance(links, list) else []:
            if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
                url: str = link["url"]
                if _origin(url) != _origin(self.base_url):
                    raise EhrUnavailable(f"{what}: the next page is on another server ({_origin(url)[1]}); "
                                         "the token is not sent there")
                return url
        return None

    def fetch_all(self, specs: Iterable[PrefetchKey], patient_id: str) -> tuple[dict[str, list[dict[str, Any]]],
                                                                               dict[str, str]]:
        """Every key at once: (resources per resource type, reason per key that failed)."""
        todo = list(specs)
        if not todo:
            return {}, {}
        got: dict[str, list[dict[str, Any]]] = {}
        failed: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=min(8, len(todo)), thread_name_prefix="cds-fetch") as pool:
            futures = {spec: pool.submit(self.fetch, spec, patient_id) for spec in todo}
            for spec, future in futures.items():
                try:
                    got[spec.resource_type] = future.result()
                except EhrUnavailable as exc:
                    failed[spec.key] = str(exc)
        return got, failed
