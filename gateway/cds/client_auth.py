"""Authentication of CDS clients (EHRs) calling the CDS Hooks service.

CDS Hooks 2.0, "Trusting CDS Clients": every call carries ``Authorization: Bearer <JWT>`` that
the CDS client signs with its own private key (never ``none``, never an HMAC algorithm). The
payload has ``iss`` (the client), ``aud`` (the URL of the CDS Service endpoint being invoked),
``exp``, ``iat``, ``jti`` (a nonce against replay) and optionally ``tenant`` (the healthcare
organisation). The service keeps an allow list of issuers: here ``CDS_CLIENTS``, a JSON list (or
the path of a JSON file) of ``{"iss": ..., "jwks_url": ...}``. A ``jku`` header is only accepted
when it names the configured JWKS URL: keys are never fetched from a URL the token chooses.

Rules checked here, beyond the signature: the token lives at most :data:`MAX_LIFETIME_S`
(``exp - iat``); each ``jti`` of an issuer is accepted once, remembered in Redis until the token
expires, so that every gateway process refuses a replay; when Redis cannot be asked, the call
is refused with 503 (a replay could not be ruled out).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
import redis
from flask import g

from gateway.scopes import Principal
from gateway.tokens import LEEWAY_S, MAX_TOKEN_CHARS, JwksCache, unauthorized, verify_signed_claims
from netliver.fhir.outcome import FhirError
from netliver.settings import Settings

__all__ = [
    "JTI_KEY_PREFIX",
    "MAX_LIFETIME_S",
    "CdsClient",
    "CdsClientVerifier",
    "JtiStore",
    "JtiStoreUnavailable",
    "RedisJtiStore",
    "cds_verifier",
    "current_cds_client",
    "parse_cds_clients",
]

_log = logging.getLogger("netliver.gateway.cds.auth")

#: CDS Hooks 2.0 asks for short-lived tokens; five minutes is the most accepted here (contract).
MAX_LIFETIME_S = 300
#: Redis key prefix of the used ``jti`` values (``<prefix><iss>|<jti>``).
JTI_KEY_PREFIX = "netliver:cds-jti:"
REDIS_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class CdsClient:
    """One trusted CDS client: its issuer identifier, the JWKS URL of its signing keys and,
    optionally, the only ``fhirServer`` base URLs its calls may name (empty = any)."""

    iss: str
    jwks_url: str
    fhir_servers: tuple[str, ...] = ()

    def may_use(self, fhir_server: str) -> bool:
        return not self.fhir_servers or fhir_server.rstrip("/") in self.fhir_servers


def parse_cds_clients(text: str) -> tuple[CdsClient, ...]:
    """``CDS_CLIENTS``: a JSON list of ``{"iss", "jwks_url"}`` (optionally ``"fhir_servers"``, a
    list of the EHR's FHIR base URLs), or the path of a file holding one.

    Raises ``ValueError`` naming the problem (the gateway then refuses to start)."""
    raw = text.strip()
    if not raw:
        return ()
    if not raw.startswith("["):
        path = Path(raw)
        if not path.is_file():
            raise ValueError(f"CDS_CLIENTS is neither a JSON list nor the path of a file: {raw[:80]!r}")
        raw = path.read_text(encoding="utf-8")
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"CDS_CLIENTS is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ValueError("CDS_CLIENTS must be a JSON list of {\"iss\": ..., \"jwks_url\": ...}")
    clients: dict[str, CdsClient] = {}
    for i, entry in enumerate(entries):
        iss = entry.get("iss") if isinstance(entry, dict) else None
        url = entry.get("jwks_url") if isinstance(entry, dict) else None
        if not isinstance(iss, str) or not iss or not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ValueError(f"CDS_CLIENTS[{i}] needs a non-empty \"iss\" and an http(s) \"jwks_url\"")
        if iss in clients:
            raise ValueError(f"CDS_CLIENTS names the issuer {iss!r} twice")
        servers = entry.get("fhir_servers", [])
        if not isinstance(servers, list) or not all(isinstance(u, str) and u.startswith(("https://", "http://"))
                                                    for u in servers):
            raise ValueError(f"CDS_CLIENTS[{i}].fhir_servers must be a list of http(s) URLs")
        clients[iss] = CdsClient(iss, url, tuple(u.rstrip("/") for u in servers))
    return tuple(clients.values())


class JtiStoreUnavailable(Exception):
    """The store of used ``jti`` values cannot be asked."""


class JtiStore(Protocol):
    def first_use(self, key: str, ttl_s: int) -> bool:
        """Record ``key`` for ``ttl_s`` seconds; False when it was already recorded."""
        ...


class RedisJtiStore:
    """Used ``jti`` values in Redis (``SET NX EX``): one answer for every gateway process."""

    def __init__(self, client: redis.Redis, prefix: str = JTI_KEY_PREFIX) -> None:
        self.client = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str) -> RedisJtiStore:
        return cls(redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                        socket_connect_timeout=REDIS_TIMEOUT_S))

    def first_use(self, key: str, ttl_s: int) -> bool:
        try:
            return bool(self.client.set(f"{self.prefix}{key}", b"1", nx=True, ex=max(1, ttl_s)))
        except redis.RedisError as exc:
            raise JtiStoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


class CdsClientVerifier:
    """Checks a CDS client's JWT and turns it into a :class:`Principal` of kind ``cds-client``."""

    def __init__(self, clients: Iterable[CdsClient], jti_store: JtiStore, *,
                 jwks_factory: Callable[[str], JwksCache] = JwksCache, leeway_s: float = LEEWAY_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.clients = {c.iss: c for c in clients}
        self.jwks = {c.iss: jwks_factory(c.jwks_url) for c in self.clients.values()}
        self.jti_store = jti_store
        self.leeway_s = leeway_s
        self.clock = clock

    def verify(self, token: str, audiences: list[str]) -> Principal:
        """The caller of a CDS Hooks call whose endpoint URL is one of ``audiences``."""
        if len(token) > MAX_TOKEN_CHARS:
            raise unauthorized("the bearer token is too long to be a JWT")
        try:
            header = jwt.get_unverified_header(token)
            unverified: Mapping[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise unauthorized("the bearer token is not a well-formed JWT") from None
        iss = unverified.get("iss")
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise unauthorized(f"the token's issuer {str(iss)[:120]!r} is not a trusted CDS client (CDS_CLIENTS)")
        if header.get("jku") is not None and header.get("jku") != client.jwks_url:
            raise unauthorized("the token's jku is not the JWKS URL configured for its issuer")

        def keys_down(reason: str) -> FhirError:
            return FhirError(503, "transient", f"the signing keys of CDS client {client.iss!r} cannot be "
                             f"fetched: {reason}", headers={"Retry-After": "30"})

        claims = verify_signed_claims(
            token, self.jwks[client.iss], audience=audiences,
            audience_text=f"this CDS endpoint ({' or '.join(repr(a) for a in audiences)})", issuer=client.iss,
            required=("exp", "iat", "iss", "aud", "jti"), leeway_s=self.leeway_s, keys_down=keys_down)
        if not isinstance(claims.get("iat"), int | float) or not isinstance(claims.get("exp"), int | float):
            raise unauthorized("the token's iat and exp must be numbers")
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > MAX_LIFETIME_S:
            raise unauthorized(f"the token lives {lifetime:.0f} s; a CDS client token may live at most "
                               f"{MAX_LIFETIME_S} s (exp - iat)")
        self._first_use(client.iss, claims)
        tenant, sub = claims.get("tenant"), claims.get("sub")
        return Principal("cds-client", client_id=client.iss, subject=sub if isinstance(sub, str) else None,
                         tenant=tenant if isinstance(tenant, str) else None)

    def _first_use(self, iss: str, claims: Mapping[str, Any]) -> None:
        """401 unless the token's ``jti`` was never accepted before (by any gateway process)."""
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise unauthorized("the token's jti must be a non-empty string")
        ttl = int(claims["exp"] - self.clock() + self.leeway_s) + 1
        try:
            fresh = self.jti_store.first_use(f"{iss}|{jti}", ttl)
        except JtiStoreUnavailable as exc:
            _log.warning("jti store unreachable", extra={"error": str(exc)})
            raise FhirError(503, "transient", "the replay check of CDS client tokens (Redis) is unavailable",
                            headers={"Retry-After": "5"}) from None
        if not fresh:
            raise unauthorized("the token's jti was already used (replay)")


def cds_verifier(settings: Settings) -> Callable[[str, list[str]], Principal] | None:
    """The CDS client check of a gateway (``CDS_CLIENTS``, jti in ``REDIS_URL``), or None when no
    client is configured. Raises ``ValueError`` at start when ``CDS_CLIENTS`` is malformed."""
    clients = parse_cds_clients(settings.cds_clients)
    if not clients:
        return None
    verifier = CdsClientVerifier(clients, RedisJtiStore.from_url(settings.redis_url))

    def verify(token: str, audiences: list[str]) -> Principal:
        principal = verifier.verify(token, audiences)
        g.cds_client = verifier.clients[principal.client_id or ""]  # the views check fhirServer against it
        return principal

    return verify


def current_cds_client() -> CdsClient | None:
    """The CDS client authenticated for the current request (None under ``AUTH_MODE=off``)."""
    client = g.get("cds_client")
    return client if isinstance(client, CdsClient) else None
