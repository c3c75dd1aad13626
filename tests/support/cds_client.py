"""A CDS client (an EHR) as CDS Hooks 2.0 describes one, written from the specification and not
from netliver's code: its own signing keys published as a JWKS on loopback, a fresh JWT per
call ("Trusting CDS Clients": ``iss``, ``aud`` = the endpoint URL, ``exp``, ``iat``, ``jti``,
``tenant``; header ``alg``/``kid``/``typ``), and prefetch by template against its own FHIR server
("Prefetch Template": tokens replaced, one page per key, ``null`` when there is no data, the key
left out when the query failed).

    with CdsClientSim() as ehr:
        settings = {"CDS_CLIENTS": json.dumps([ehr.registration])}
        token = ehr.token("https://netliver.test/cds-services/liver-directed-therapy")
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import jwt
import requests

from tests.support.jwks import ALGORITHMS, JwksServer
from tests.support.jwt_gateway import jwt_gateway_env

__all__ = ["EHR_ISSUER", "CdsClientSim", "gateway_env"]

EHR_ISSUER = "https://ehr.hospital.test/"
PATIENT_TOKEN = "{{context.patientId}}"


def gateway_env(tmp: Path, idp: JwksServer, ehr: CdsClientSim, eligibility_url: str, public_base_url: str,
                **more: str) -> dict[str, str]:
    """Environment of a gateway under test that trusts ``ehr`` as a CDS client (AUTH_MODE=jwt with
    ``idp`` as the hospital issuer, its own SQLite store, no PACS, jobs or rate limits)."""
    return jwt_gateway_env(idp, tmp, **{"PUBLIC_BASE_URL": public_base_url, "ELIGIBILITY_URL": eligibility_url,
                                        "CDS_CLIENTS": json.dumps([ehr.registration]), **more})


class CdsClientSim:
    """Keys, tokens and prefetch of one EHR. Start with ``with`` (serves the JWKS)."""

    def __init__(self, issuer: str = EHR_ISSUER, tenant: str = "hospital-a") -> None:
        self.issuer = issuer
        self.tenant = tenant
        self.keys = JwksServer(issuer=issuer, audience="")

    def __enter__(self) -> CdsClientSim:
        self.keys.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.keys.stop()

    @property
    def registration(self) -> dict[str, str]:
        """What the service's operator configures for this client (``CDS_CLIENTS`` entry)."""
        return {"iss": self.issuer, "jwks_url": self.keys.jwks_url}

    def token(self, aud: str | list[str], *, alg: str = "ES384", lifetime_s: int = 300,
              issued_at: float | None = None, **claims: Any) -> str:
        """A signed CDS client JWT (a fresh ``jti`` each time); ``claims`` override or (given as
        None) remove payload fields."""
        now = int(issued_at if issued_at is not None else time.time())
        payload: dict[str, Any] = {"iss": self.issuer, "aud": aud, "iat": now, "exp": now + lifetime_s,
                                   "jti": str(uuid.uuid4()), "tenant": self.tenant}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        key, _ = self.keys.keys[ALGORITHMS[alg]]
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": ALGORITHMS[alg], "typ": "JWT"})

    @staticmethod
    def hook_request(patient_id: str, *, prefetch: dict[str, Any] | None = None,
                     fhir_server: str | None = None, access_token: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                                "context": {"userId": "Practitioner/example", "patientId": patient_id}}
        if fhir_server is not None:
            body["fhirServer"] = fhir_server
        if access_token is not None:
            body["fhirAuthorization"] = {"access_token": access_token, "token_type": "Bearer",
                                         "expires_in": 300, "scope": "patient/*.read", "subject": "netliver"}
        if prefetch is not None:
            body["prefetch"] = prefetch
        return body

    @staticmethod
    def prefetch(templates: dict[str, str], fhir_base: str, patient_id: str,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Each template run against ``fhir_base``: a resource, a single-page searchset Bundle
        (every page merged), ``null`` for no data, the key left out when the query failed."""
        out: dict[str, Any] = {}
        for key, template in templates.items():
            url: str | None = f"{fhir_base.rstrip('/')}/{template.replace(PATIENT_TOKEN, patient_id)}"
            assert url is not None
            resp = requests.get(url, headers={"Accept": "application/fhir+json", **(headers or {})}, timeout=30)
            if resp.status_code in (404, 410):
                out[key] = None
                continue
            if resp.status_code != 200:
                continue  # an error: the key is not sent
            body = resp.json()
            if body.get("resourceType") != "Bundle":
                out[key] = body
                continue
            entries = list(body.get("entry", []))
            url = _next(body)
            while url is not None:
                page = requests.get(url, headers={"Accept": "application/fhir+json", **(headers or {})},
                                    timeout=30).json()
                entries += page.get("entry", [])
                url = _next(page)
            out[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                        "entry": entries} if entries else None
        return out


def _next(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            url: str = link["url"]
            return url
    return None
