"""Authentication and SMART scope checks of the gateway.

Callers present ``Authorization: Bearer <JWT>`` issued by the hospital's OAuth 2.0 server for
SMART Backend Services (HL7 SMART App Launch 2.x, "Backend Services" and "Scopes and Launch
Context"). The gateway checks the signature against the issuer's JWKS (RFC 7517), the ``iss``,
``aud``, ``exp`` and ``nbf`` claims (RFC 7519 §4.1) and answers failures as RFC 6750 §3 says:
401 with ``WWW-Authenticate: Bearer error="invalid_token"``, 403 with
``error="insufficient_scope"``. Each view then states which resource types it reads and
writes with :func:`require_scopes`.

Scope mapping (documented for hospitals in ``docs/auth.md``):

* read of a type is covered by v1 ``<ctx>/<Type>.read`` or ``.*``, or by a v2 scope whose
  permission letters contain ``r`` (read) or ``s`` (search);
* write of a type is covered by v1 ``.write`` or ``.*``, or by a v2 scope containing ``c``
  (create) or ``u`` (update): results are stored with ``PUT`` by deterministic id, which is a
  create the first time and an update afterwards;
* ``*`` as the resource type covers every type; ``<ctx>`` is ``system`` or ``user``.
  ``patient/`` scopes grant nothing here: they limit access to one patient's compartment,
  which the gateway's operations cannot enforce, so honouring them would widen the grant.
  v2 scopes narrowed by a query (``system/Observation.rs?category=laboratory``) grant nothing
  either, for the same reason.

Internal job endpoints (``/internal/...``) are called by the dosimetry workers with the shared
secret ``INTERNAL_TOKEN`` in ``X-Internal-Token`` instead of a JWT; the Orthanc stable-study
hook accepts either.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask, current_app, g, request

from netliver.fhir.outcome import FhirError, Issue
from netliver.settings import Settings

__all__ = [
    "ACCEPTED_ALGORITHMS",
    "EXEMPT_PATHS",
    "HOOK_PATHS",
    "INTERNAL_PATH_PREFIX",
    "INTERNAL_TOKEN_HEADER",
    "PUBLISHED_INTERNAL_TOKENS",
    "JwksCache",
    "JwksUnavailable",
    "Principal",
    "Scope",
    "TokenVerifier",
    "current_client_id",
    "current_principal",
    "init_auth",
    "is_loopback_host",
    "missing_scopes",
    "parse_scopes",
    "require_hook_auth",
    "require_internal_token",
    "require_scopes",
    "unauthorized",
    "verify_signed_claims",
]

_log = logging.getLogger("netliver.gateway.auth")

#: Paths served without any credential (contract, "Authentication"); CDS Hooks discovery is
#: public as well (GET only).
EXEMPT_PATHS = frozenset({"/health", "/fhir/metadata", "/.well-known/smart-configuration"})
CDS_DISCOVERY_PATH = "/cds-services"
#: CDS Hooks service calls and feedback: authenticated as CDS clients (gateway/cds/client_auth.py).
CDS_PATH_PREFIX = "/cds-services/"
#: Paths of the worker → gateway job protocol, guarded by the internal token.
INTERNAL_PATH_PREFIX = "/internal/"
#: Paths that accept the internal token as an alternative to a JWT (Orthanc's Lua script; the
#: catch-up call, which then requires the internal token itself).
HOOK_PATHS = frozenset({"/hooks/orthanc/stable-study", "/hooks/orthanc/catch-up"})
INTERNAL_TOKEN_HEADER = "X-Internal-Token"
#: Internal tokens written in this repository (settings default, docker-compose placeholder):
#: refused at start with ``AUTH_MODE=jwt``, where they would open the job calls to anyone.
PUBLISHED_INTERNAL_TOKENS = frozenset({Settings.internal_token, "change-me"})
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

_EXTENSION = "netliver.auth"
_HONOURED_CONTEXTS = frozenset({"system", "user"})
_SCOPE_RE = re.compile(r"^(system|user|patient)/(\*|[A-Z][A-Za-z]*)\.(read|write|\*|[cruds]+)$")
_V2_ORDER = "cruds"


# -- scopes (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """One SMART resource scope, reduced to what the gateway checks: read and/or write of a type."""

    context: str
    resource_type: str
    read: bool
    write: bool

    def covers(self, resource_type: str, *, write: bool) -> bool:
        if self.context not in _HONOURED_CONTEXTS:
            return False
        if self.resource_type not in ("*", resource_type):
            return False
        return self.write if write else self.read


def _parse_scope(text: str) -> Scope | None:
    match = _SCOPE_RE.match(text)
    if match is None:
        return None  # openid, launch, fhirUser, offline_access, query-narrowed or malformed
    context, resource_type, perms = match.groups()
    if perms == "read":
        return Scope(context, resource_type, read=True, write=False)
    if perms == "write":
        return Scope(context, resource_type, read=False, write=True)
    if perms == "*":
        return Scope(context, resource_type, read=True, write=True)
    # SMART v2: letters from "cruds", each at most once, in that order.
    if perms != "".join(ch for ch in _V2_ORDER if ch in perms):
        return None
    return Scope(context, resource_type, read="r" in perms or "s" in perms,
                 write="c" in perms or "u" in perms)


def parse_scopes(claim: object) -> tuple[Scope, ...]:
    """The resource scopes in a ``scope`` claim (space-separated string, or a list of strings).

    Scopes that are not resource scopes, or are malformed, are ignored (they grant nothing).
    """
    if isinstance(claim, str):
        words = claim.split()
    elif isinstance(claim, list | tuple):
        words = [w for item in claim if isinstance(item, str) for w in item.split()]
    else:
        words = []
    return tuple(s for s in (_parse_scope(w) for w in words) if s is not None)


def missing_scopes(scopes: Iterable[Scope], read: Iterable[str] = (),
                   write: Iterable[str] = ()) -> list[str]:
    """One sentence per resource type whose read or write ``scopes`` do not cover (empty = allowed)."""
    held = tuple(scopes)
    missing: list[str] = []
    for resource_type in dict.fromkeys(read):
        if not any(s.covers(resource_type, write=False) for s in held):
            missing.append(f"reading {resource_type} needs system/{resource_type}.r "
                           f"(or .s, or v1 system/{resource_type}.read)")
    for resource_type in dict.fromkeys(write):
        if not any(s.covers(resource_type, write=True) for s in held):
            missing.append(f"writing {resource_type} needs system/{resource_type}.c "
                           f"(or .u, or v1 system/{resource_type}.write)")
    return missing


# -- principal -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who is calling, stored in ``flask.g.principal`` for the views, logs and rate limiting.

    ``kind`` is ``token`` (a verified JWT), ``cds-client`` (an EHR's CDS Hooks JWT, no scopes),
    ``internal`` (the internal token), ``auth-off``
    (``AUTH_MODE=off``: everyone is trusted) or ``anonymous`` (an exempt path under ``jwt``).
    """

    kind: str
    client_id: str | None = None
    subject: str | None = None
    scopes: tuple[Scope, ...] = ()
    #: The healthcare organisation a CDS client calls for (CDS Hooks ``tenant`` claim).
    tenant: str | None = None

    @property
    def unrestricted(self) -> bool:
        return self.kind in ("internal", "auth-off")


_AUTH_OFF = Principal("auth-off")
_ANONYMOUS = Principal("anonymous")
_INTERNAL = Principal("internal", client_id="internal", subject="internal")


# -- errors ------------------------------------------------------------------------------------


def _header_text(text: str) -> str:
    """``text`` made safe for a quoted-string in ``WWW-Authenticate`` (RFC 6750 §3)."""
    return "".join(ch for ch in text if 0x20 <= ord(ch) < 0x7F and ch not in '"\\')


def _unauthorized(diagnostics: str, code: str = "security") -> FhirError:
    challenge = (f'Bearer realm="netliver", error="invalid_token", '
                 f'error_description="{_header_text(diagnostics)}"')
    return FhirError(401, code, diagnostics, headers={"WWW-Authenticate": challenge})


#: Public name of the 401 builder (CDS client authentication answers alike).
unauthorized = _unauthorized


def _forbidden(missing: Sequence[str]) -> FhirError:
    challenge = 'Bearer realm="netliver", error="insufficient_scope"'
    issues = [Issue("forbidden", f"the token's scopes do not allow this operation: {m}")
              for m in missing]
    return FhirError.from_issues(403, issues, headers={"WWW-Authenticate": challenge})


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
        self.session = session or requests.Session()
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
    401 naming what is wrong otherwise, ``keys_down(reason)`` when the keys cannot be fetched."""
    if len(token) > MAX_TOKEN_CHARS:
        raise _unauthorized("the bearer token is too long to be a JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _unauthorized("the bearer token is not a well-formed JWT") from None
    alg = header.get("alg")
    if alg not in ACCEPTED_ALGORITHMS:
        raise _unauthorized(f"the token's algorithm {str(alg)[:20]!r} is not accepted "
                            f"(only {', '.join(ACCEPTED_ALGORITHMS)})")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _unauthorized("the token's 'kid' header is not a string")
    try:
        candidates = [k for k in jwks.keys_for(kid) if _key_fits(k, alg)]
    except JwksUnavailable as exc:
        raise keys_down(str(exc)) from None
    if not candidates:
        raise _unauthorized("the token is signed by a key the issuer does not publish"
                            + (f" (kid {kid[:64]!r})" if kid else ""))
    for key in candidates:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=audience, issuer=issuer, leeway=leeway_s,
                options={"require": list(required)})
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired", code="login") from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized(f"the token's audience is not {audience_text}") from None
        except jwt.InvalidIssuerError:
            raise _unauthorized(f"the token's issuer is not {issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthorized(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"the token is invalid: {exc}") from None
        return claims
    raise _unauthorized("the token's signature does not verify")


def _principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    subject = claims.get("sub") if isinstance(claims.get("sub"), str) else None
    client_id: str | None = None
    for name in ("client_id", "azp", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            client_id = value
            break
    return Principal("token", client_id=client_id, subject=subject,
                     scopes=parse_scopes(claims.get("scope", claims.get("scp"))))


# -- Flask wiring ------------------------------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


#: Verifies a CDS client's bearer JWT against the endpoint URLs it may be addressed to.
CdsVerify = Callable[[str, list[str]], Principal]


@dataclass(frozen=True)
class _AuthState:
    settings: Settings
    verifier: TokenVerifier | None
    cds_verify: CdsVerify | None = None


def _state() -> _AuthState:
    state = current_app.extensions.get(_EXTENSION)
    if not isinstance(state, _AuthState):
        raise RuntimeError("init_auth(app, settings) was not called on this app")
    return state


def init_auth(app: Flask, settings: Settings, *, jwks: JwksCache | None = None,
              cds_verify: CdsVerify | None = None) -> None:
    """Authenticate every request of ``app`` (a ``before_request``), per ``settings.auth_mode``.

    Raises ``ValueError`` at start when the configuration is unsafe or incomplete:
    ``AUTH_MODE=jwt`` without ``AUTH_JWKS_URL``/``AUTH_ISSUER``/``AUTH_AUDIENCE``, or
    ``AUTH_MODE=off`` on a non-loopback ``GATEWAY_HOST`` without ``ALLOW_INSECURE_AUTH_OFF=1``.
    ``jwks`` replaces the key cache built from ``AUTH_JWKS_URL`` (tests tune its timings).
    ``cds_verify`` checks the JWTs of CDS clients on ``/cds-services/…`` under ``jwt`` (without
    it every CDS Hooks call is refused there).
    """
    verifier: TokenVerifier | None = None
    if settings.auth_mode == "off":
        if not is_loopback_host(settings.gateway_host) and not settings.allow_insecure_auth_off:
            raise ValueError(
                f"AUTH_MODE=off would expose the gateway without authentication on "
                f"{settings.gateway_host!r}; bind GATEWAY_HOST to 127.0.0.1, set AUTH_MODE=jwt, "
                f"or set ALLOW_INSECURE_AUTH_OFF=1 if you really mean it")
        _log.warning(
            "AUTH IS OFF (AUTH_MODE=off): no token is checked and every caller may read and "
            "write everything. Use only for the local demo; set AUTH_MODE=jwt in any deployment.",
            extra={"gateway_host": settings.gateway_host,
                   "allow_insecure_auth_off": settings.allow_insecure_auth_off})
    elif settings.auth_mode == "jwt":
        missing = [env for env, value in (("AUTH_JWKS_URL", settings.auth_jwks_url),
                                          ("AUTH_ISSUER", settings.auth_issuer),
                                          ("AUTH_AUDIENCE", settings.auth_audience)) if not value]
        if missing:
            raise ValueError(f"AUTH_MODE=jwt needs {', '.join(missing)}")
        if settings.auth_jwks_url.startswith("http://"):
            _log.warning("AUTH_JWKS_URL is plain http: signing keys can be forged in transit",
                         extra={"jwks_url": settings.auth_jwks_url})
        verifier = TokenVerifier(jwks or JwksCache(settings.auth_jwks_url),
                                 settings.auth_issuer, settings.auth_audience)
    else:
        raise ValueError(f"AUTH_MODE must be off or jwt, not {settings.auth_mode!r}")
    if not settings.internal_token:
        _log.warning("INTERNAL_TOKEN is empty: every /internal/ call will be refused")
    elif settings.internal_token in PUBLISHED_INTERNAL_TOKENS and settings.auth_mode == "jwt":
        # Published in this repository: anyone could write results through the job calls.
        raise ValueError("AUTH_MODE=jwt needs INTERNAL_TOKEN set to a secret of this deployment "
                         "(the default and the compose file's placeholder are public)")
    app.extensions[_EXTENSION] = _AuthState(settings, verifier, cds_verify)
    app.before_request(_authenticate)


def _authenticate() -> None:
    state = _state()
    path = request.path
    if path in EXEMPT_PATHS or (path == CDS_DISCOVERY_PATH and request.method in ("GET", "HEAD")) or (
            request.method == "OPTIONS"):  # CORS preflights carry no credentials (Fetch standard)
        g.principal = _AUTH_OFF if state.verifier is None else _ANONYMOUS
    elif path.startswith(CDS_PATH_PREFIX) and state.verifier is not None:
        g.principal = _check_cds_client(state)
    elif path.startswith(INTERNAL_PATH_PREFIX) or (
            path in HOOK_PATHS and INTERNAL_TOKEN_HEADER in request.headers):
        g.principal = _check_internal_token(state.settings)
    elif state.verifier is None:
        g.principal = _AUTH_OFF
    else:
        g.principal = state.verifier.verify(_bearer_token())


def cds_audiences() -> list[str]:
    """The URLs a CDS client's ``aud`` may name for this request (CDS Hooks 2.0: the endpoint
    being invoked; feedback also accepts its service's URL). Built on ``PUBLIC_BASE_URL``."""
    root = (_state().settings.public_base_url or request.url_root).rstrip("/")
    url = root + request.path.rstrip("/")
    audiences = [url]
    if url.endswith("/feedback"):
        audiences.append(url.removesuffix("/feedback"))
    return audiences


def _check_cds_client(state: _AuthState) -> Principal:
    if state.cds_verify is None:
        raise _unauthorized("no CDS client is trusted by this gateway (CDS_CLIENTS is empty)")
    return state.cds_verify(_bearer_token(), cds_audiences())


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    if not header.strip():
        raise _unauthorized("no bearer token: send 'Authorization: Bearer <JWT>'", code="login")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise _unauthorized("the Authorization header is not 'Bearer <JWT>'", code="login")
    return token


def _check_internal_token(settings: Settings) -> Principal:
    provided = request.headers.get(INTERNAL_TOKEN_HEADER)
    if provided is None:
        raise _unauthorized(f"internal endpoint: send the {INTERNAL_TOKEN_HEADER} header",
                            code="login")
    expected = settings.internal_token
    if not expected or not hmac.compare_digest(provided.encode(), expected.encode()):
        raise _unauthorized(f"the {INTERNAL_TOKEN_HEADER} header is wrong")
    return _INTERNAL


def current_principal() -> Principal | None:
    """The caller of the current request, once :func:`init_auth` has authenticated it."""
    principal = g.get("principal")
    return principal if isinstance(principal, Principal) else None


def current_client_id() -> str | None:
    """The calling client's id (``client_id``, else ``azp``, else ``sub``; ``internal`` for the
    internal token), or None when the caller is not identified (auth off, exempt paths)."""
    principal = current_principal()
    return principal.client_id if principal is not None else None


def require_scopes(read: Iterable[str] = (), write: Iterable[str] = ()) -> None:
    """Raise ``FhirError`` 403 unless the caller's scopes cover reading ``read`` and writing
    ``write`` resource types (see the module docstring for the mapping). A no-op while
    authentication is off and for the internal token; 401 when the request carries no
    authenticated caller at all."""
    principal = current_principal()
    if principal is None or principal.kind == "anonymous":
        raise _unauthorized("this operation needs an authenticated caller", code="login")
    if principal.unrestricted:
        return
    missing = missing_scopes(principal.scopes, read, write)
    if missing:
        raise _forbidden(missing)


def require_internal_token() -> None:
    """Raise ``FhirError`` 401 unless the request carries the right ``X-Internal-Token``
    (compared in constant time with ``INTERNAL_TOKEN``). For the ``/internal/`` job views."""
    principal = current_principal()
    if principal is not None and principal.kind == "internal":
        return
    g.principal = _check_internal_token(_state().settings)


def require_hook_auth(read: Iterable[str] = (), write: Iterable[str] = ("ImagingStudy",)) -> None:
    """The Orthanc stable-study hook: the internal token header, or a JWT whose scopes cover
    reading ``read`` and writing ``write`` (at least ImagingStudy, ``system/ImagingStudy.c``)."""
    if INTERNAL_TOKEN_HEADER in request.headers:
        require_internal_token()
        return
    require_scopes(read=read, write=write)
