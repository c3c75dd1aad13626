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

from gateway.auth import (
    ACCEPTED_ALGORITHMS,
    LEEWAY_S,
    MAX_TOKEN_CHARS,
    JwksCache,
    JwksUnavailable,
    Principal,
    key_fits,
    unauthorized,
)
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
    """One trusted CDS client: its issuer identifier and the JWKS URL of its signing keys."""

    iss: str
    jwks_url: str


def parse_cds_clients(text: str) -> tuple[CdsClient, ...]:
    """``CDS_CLIENTS``: a JSON list of ``{"iss", "jwks_url"}``, or the path of a file holding one.

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
        clients[iss] = CdsClient(iss, url)
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


def _audience_text(audiences: Iterable[str]) -> str:
    return " or ".join(repr(a) for a in audiences)


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
        header = self._header(token)
        try:
            unverified: Mapping[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise unauthorized("the bearer token is not a well-formed JWT") from None
        iss = unverified.get("iss")
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise unauthorized(f"the token's issuer {str(iss)[:120]!r} is not a trusted CDS client (CDS_CLIENTS)")
        jku = header.get("jku")
        if jku is not None and jku != client.jwks_url:
            raise unauthorized("the token's jku is not the JWKS URL configured for its issuer")
        claims = self._decode(token, header, client, audiences)
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > MAX_LIFETIME_S:
            raise unauthorized(f"the token lives {lifetime:.0f} s; a CDS client token may live at most "
                               f"{MAX_LIFETIME_S} s (exp - iat)")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise unauthorized("the token's jti must be a non-empty string")
        ttl = int(claims["exp"] - self.clock() + self.leeway_s) + 1
        try:
            fresh = self.jti_store.first_use(f"{client.iss}|{jti}", ttl)
        except JtiStoreUnavailable as exc:
            _log.warning("jti store unreachable", extra={"error": str(exc)})
            raise FhirError(503, "transient", "the replay check of CDS client tokens (Redis) is unavailable",
                            headers={"Retry-After": "5"}) from None
        if not fresh:
            raise unauthorized("the token's jti was already used (replay)")
        tenant = claims.get("tenant")
        sub = claims.get("sub")
        return Principal("cds-client", client_id=client.iss, subject=sub if isinstance(sub, str) else None,
                         tenant=tenant if isinstance(tenant, str) else None)

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_CHARS:
            raise unauthorized("the bearer token is too long to be a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("the bearer token is not a well-formed JWT") from None
        if header.get("alg") not in ACCEPTED_ALGORITHMS:
            raise unauthorized(f"the token's algorithm {str(header.get('alg'))[:20]!r} is not accepted "
                               f"(only {', '.join(ACCEPTED_ALGORITHMS)})")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise unauthorized("the token's 'kid' header is not a string")
        return header

    def _decode(self, token: str, header: Mapping[str, Any], client: CdsClient,
                audiences: list[str]) -> dict[str, Any]:
        alg, kid = header["alg"], header.get("kid")
        try:
            candidates = [k for k in self.jwks[client.iss].keys_for(kid) if key_fits(k, alg)]
        except JwksUnavailable as exc:
            raise FhirError(503, "transient", f"the signing keys of CDS client {client.iss!r} cannot be fetched: {exc}",
                            headers={"Retry-After": "30"}) from None
        if not candidates:
            raise unauthorized("the token is signed by a key its issuer does not publish"
                               + (f" (kid {kid[:64]!r})" if kid else ""))
        for key in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, key.key, algorithms=[alg], audience=audiences, issuer=client.iss,
                    leeway=self.leeway_s, options={"require": ["exp", "iat", "iss", "aud", "jti"]})
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise unauthorized("the token has expired", code="login") from None
            except jwt.ImmatureSignatureError:
                raise unauthorized("the token is not valid yet (nbf or iat in the future)") from None
            except jwt.InvalidAudienceError:
                raise unauthorized(f"the token's audience is not this CDS endpoint ({_audience_text(audiences)})") from None
            except jwt.MissingRequiredClaimError as exc:
                raise unauthorized(f"the token lacks the {exc.claim!r} claim") from None
            except jwt.PyJWTError as exc:
                raise unauthorized(f"the token is invalid: {exc}") from None
            if not isinstance(claims.get("iat"), int | float) or not isinstance(claims.get("exp"), int | float):
                raise unauthorized("the token's iat and exp must be numbers")
            return claims
        raise unauthorized("the token's signature does not verify")


def cds_verifier(settings: Settings) -> Callable[[str, list[str]], Principal] | None:
    """The CDS client check of a gateway (``CDS_CLIENTS``, jti in ``REDIS_URL``), or None when no
    client is configured. Raises ``ValueError`` at start when ``CDS_CLIENTS`` is malformed."""
    clients = parse_cds_clients(settings.cds_clients)
    if not clients:
        return None
    return CdsClientVerifier(clients, RedisJtiStore.from_url(settings.redis_url)).verify
