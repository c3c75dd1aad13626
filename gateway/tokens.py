"""Bearer JWT verification against the issuer's JWKS (RFC 7517, RFC 7519, RFC 7518 §3.1).

:class:`JwksCache` fetches and caches the issuer's signing keys; :class:`TokenVerifier` checks a
token's algorithm, key, signature and ``iss``/``aud``/``exp``/``nbf`` claims and turns it into a
:class:`~gateway.scopes.Principal`. Failures are answered as RFC 6750 §3 says (401 with
``WWW-Authenticate: Bearer error="invalid_token"``), an unreachable JWKS as 503.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.scopes import Principal, parse_scopes
from netliver import sessions
from netliver.fhir.outcome import FhirError

__all__ = [
    "ACCEPTED_ALGORITHMS",
    "JwksCache",
    "JwksUnavailable",
    "TokenVerifier",
    "patient_context",
    "unauthorized",
    "verify_signed_claims",
]

_log = logging.getLogger("netliver.gateway.auth")

#: Signature algorithms accepted (contract); everything else, ``none`` and HS* included, is 401.
ACCEPTED_ALGORITHMS = ("RS256", "RS384", "ES384")
#: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``, seconds.
LEEWAY_S = 30
#: Longest token accepted, characters (a JWT with a few hundred scopes stays far below).
MAX_TOKEN_CHARS = 16_384
#: Seconds a fetched JWKS is used before it is fetched again.
JWKS_TTL_S = 300.0
#: Least seconds between two JWKS fetches (bounds the refetch an unknown ``kid`` triggers).
JWKS_MIN_REFETCH_S = 10.0
#: While the JWKS endpoint is down, keys fetched at most this many seconds ago stay in use.
JWKS_MAX_STALE_S = 3600.0
JWKS_TIMEOUT_S = 5.0
#: ``Retry-After`` of the 503 answered when the issuer's keys cannot be fetched.
JWKS_RETRY_AFTER_S = 30


def _header_text(text: str) -> str:
    """``text`` made safe for a quoted-string in ``WWW-Authenticate`` (RFC 6750 §3)."""
    return "".join(ch for ch in text if 0x20 <= ord(ch) < 0x7F and ch not in '"\\')


def unauthorized(diagnostics: str, code: str = "security") -> FhirError:
    challenge = (f'Bearer realm="netliver", error="invalid_token", '
                 f'error_description="{_header_text(diagnostics)}"')
    return FhirError(401, code, diagnostics, headers={"WWW-Authenticate": challenge})


def _jwks_down(reason: str) -> FhirError:
    return FhirError(503, "transient",
                     f"the token issuer's signing keys (AUTH_JWKS_URL) cannot be fetched: {reason}",
                     headers={"Retry-After": str(JWKS_RETRY_AFTER_S)})


# -- JWKS --------------------------------------------------------------------------------------


class JwksUnavailable(Exception):
    """The JWKS endpoint cannot be reached and no usable cached keys can answer."""


@dataclass(frozen=True)
class _Key:
    kid: str | None
    alg: str | None  # the JWK's own "alg", when it states one
    key: Any  # a cryptography public key


class JwksCache:
    """The issuer's signing keys, fetched with ``requests`` and cached.

    Keys are refetched after ``ttl_s``, and at once when a token names an unknown ``kid``
    (key rotation), but never more often than every ``min_refetch_s``: a flood of tokens with
    made-up key ids cannot turn the gateway against the issuer. While the endpoint is down,
    keys fetched less than ``max_stale_s`` ago keep verifying tokens.
    """

    def __init__(self, url: str, *, session: requests.Session | None = None,
                 ttl_s: float = JWKS_TTL_S, min_refetch_s: float = JWKS_MIN_REFETCH_S,
                 max_stale_s: float = JWKS_MAX_STALE_S, timeout_s: float = JWKS_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.session = session or sessions.session()
        self.ttl_s = ttl_s
        self.min_refetch_s = min_refetch_s
        self.max_stale_s = max_stale_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.fetch_count = 0
        self._keys: tuple[_Key, ...] | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._last_error: str | None = None
        self._lock = threading.Lock()

    def keys_for(self, kid: str | None) -> list[_Key]:
        """The keys that may have signed a token naming ``kid`` (all keys when it names none).

        Raises :class:`JwksUnavailable` when the answer depends on keys that cannot be fetched.
        """
        with self._lock:
            now = self.clock()
            stale = self._keys is None or now - self._fetched_at >= self.ttl_s
            if stale:
                self._refresh(now, unknown_kid=False)
            found = self._match(kid)
            if found or kid is None:
                return found
            if self._last_error is not None:
                # Answering from stale keys: the unknown kid may be a key published since.
                raise JwksUnavailable(self._last_error)
            if not stale:
                self._refresh(now, unknown_kid=True)
                found = self._match(kid)
            return found

    def _match(self, kid: str | None) -> list[_Key]:
        keys = self._keys or ()
        return [k for k in keys if kid is None or k.kid == kid]

    def _usable(self, now: float) -> bool:
        return self._keys is not None and now - self._fetched_at < self.max_stale_s

    def _refresh(self, now: float, *, unknown_kid: bool) -> None:
        if self._attempted_at is not None and now - self._attempted_at < self.min_refetch_s:
            # Fetched (or tried) moments ago: answer from what that attempt left.
            if self._last_error is None and self._keys is not None:
                return
            if not unknown_kid and self._usable(now):
                return
            raise JwksUnavailable(self._last_error or "no keys fetched yet")
        self._attempted_at = now
        try:
            keys = self._fetch()
        except JwksUnavailable as exc:
            self._last_error = str(exc)
            _log.warning("JWKS fetch failed", extra={"jwks_url": self.url, "error": str(exc)})
            if not unknown_kid and self._usable(now):
                return
            raise
        self._keys, self._fetched_at, self._last_error = keys, now, None

    def _fetch(self) -> tuple[_Key, ...]:
        self.fetch_count += 1
        try:
            resp = self.session.get(self.url, timeout=self.timeout_s,
                                    headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise JwksUnavailable(f"{type(exc).__name__} reaching the JWKS URL") from exc
        if resp.status_code != 200:
            raise JwksUnavailable(f"the JWKS URL answered HTTP {resp.status_code}")
        try:
            document = resp.json()
        except ValueError as exc:
            raise JwksUnavailable("the JWKS URL did not answer JSON") from exc
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise JwksUnavailable("the JWKS document has no 'keys' list")
        keys: list[_Key] = []
        for entry in entries:
            key = _load_jwk(entry)
            if key is not None:
                keys.append(key)
        if not keys:
            raise JwksUnavailable("the JWKS document holds no usable signing key")
        return tuple(keys)


def _load_jwk(entry: object) -> _Key | None:
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
        return None
    alg = entry.get("alg")
    if alg is not None and alg not in ACCEPTED_ALGORITHMS:
        return None
    try:
        jwk = jwt.PyJWK(entry)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        _log.warning("JWKS entry skipped", extra={"kid": entry.get("kid"), "error": str(exc)})
        return None
    public = jwk.key
    if isinstance(public, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        public = public.public_key()
    kid = entry.get("kid")
    return _Key(kid if isinstance(kid, str) else None, alg, public)


def _key_fits(key: _Key, alg: str) -> bool:
    """RFC 7518 §3.1: RS* need an RSA key, ES384 a P-384 EC key; a JWK's own ``alg`` binds it."""
    if key.alg is not None and key.alg != alg:
        return False
    if alg.startswith("RS"):
        return isinstance(key.key, rsa.RSAPublicKey)
    return isinstance(key.key, ec.EllipticCurvePublicKey) and key.key.curve.name == "secp384r1"


# -- token verification ------------------------------------------------------------------------


class TokenVerifier:
    """Checks a bearer JWT and turns it into a :class:`Principal` (or raises ``FhirError``)."""

    def __init__(self, jwks: JwksCache, issuer: str, audience: str,
                 leeway_s: float = LEEWAY_S) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s

    def verify(self, token: str) -> Principal:
        claims = verify_signed_claims(token, self.jwks, audience=self.audience, audience_text=repr(self.audience),
                                      issuer=self.issuer, required=("exp", "iss", "aud"), leeway_s=self.leeway_s,
                                      keys_down=_jwks_down)
        return _principal_from_claims(claims)


def verify_signed_claims(token: str, jwks: JwksCache, *, audience: str | list[str], audience_text: str,
                         issuer: str, required: Sequence[str], leeway_s: float,
                         keys_down: Callable[[str], FhirError]) -> dict[str, Any]:
    """The claims of ``token`` once its signature (a key of ``jwks`` fitting its ``alg``),
    ``iss``, ``aud``, ``exp``/``nbf``/``iat`` and ``required`` claims are checked; ``FhirError``
    401 naming what is wrong otherwise, ``keys_down(reason)`` when the keys cannot be fetched.
    Serves the hospital's access tokens and the CDS clients' tokens (gateway/cds/client_auth.py)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise unauthorized("the bearer token is too long to be a JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise unauthorized("the bearer token is not a well-formed JWT") from None
    alg = header.get("alg")
    if alg not in ACCEPTED_ALGORITHMS:
        raise unauthorized(f"the token's algorithm {str(alg)[:20]!r} is not accepted "
                           f"(only {', '.join(ACCEPTED_ALGORITHMS)})")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise unauthorized("the token's 'kid' header is not a string")
    try:
        candidates = [k for k in jwks.keys_for(kid) if _key_fits(k, alg)]
    except JwksUnavailable as exc:
        raise keys_down(str(exc)) from None
    if not candidates:
        raise unauthorized("the token is signed by a key the issuer does not publish"
                           + (f" (kid {kid[:64]!r})" if kid else ""))
    for key in candidates:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=audience, issuer=issuer, leeway=leeway_s,
                options={"require": list(required)})
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired", code="login") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise unauthorized(f"the token's audience is not {audience_text}") from None
        except jwt.InvalidIssuerError:
            raise unauthorized(f"the token's issuer is not {issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"the token is invalid: {exc}") from None
        return claims
    raise unauthorized("the token's signature does not verify")


def _principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    subject = claims.get("sub") if isinstance(claims.get("sub"), str) else None
    client_id: str | None = None
    for name in ("client_id", "azp", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            client_id = value
            break
    return Principal("token", client_id=client_id, subject=subject,
                     scopes=parse_scopes(claims.get("scope", claims.get("scp"))),
                     patient=patient_context(claims.get("patient")))


_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def patient_context(value: object) -> str | None:
    """The patient id of a ``patient`` launch-context value (SMART: the id; ``Patient/<id>`` is
    read the same way), or None when there is none or it is no FHIR id."""
    if not isinstance(value, str):
        return None
    text = value.strip().removeprefix("Patient/")
    return text if _FHIR_ID.match(text) else None
