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
* ``patient/`` scopes grant the same, but only within the compartment of the patient in the
  token's launch context (its ``patient`` claim; for the page, the ``patient`` its SMART launch
  returned): a view that can confine itself to one patient says so
  (``require_scopes(..., compartment=True)``) and gets that patient's id back to confine
  itself with (:mod:`gateway.compartment`); every other view, and a token with ``patient/``
  scopes but no patient, is refused 403 naming the scope.
  v2 scopes narrowed by a query (``system/Observation.rs?category=laboratory``) grant nothing:
  the gateway cannot enforce the query, so honouring them would widen the grant.

Internal job endpoints (``/internal/...``) are called by the dosimetry workers with the shared
secret ``INTERNAL_TOKEN`` in ``X-Internal-Token`` instead of a JWT; the Orthanc stable-study
hook accepts either.

The pieces: :mod:`gateway.scopes` (scopes and the caller, pure), :mod:`gateway.tokens` (JWT and
JWKS), and here the Flask wiring the views call.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from flask import Flask, current_app, g, request, session

from gateway.scopes import Principal, Scope, missing_scopes, parse_scopes
from gateway.tokens import (
    ACCEPTED_ALGORITHMS,
    JwksCache,
    JwksUnavailable,
    TokenVerifier,
    patient_context,
    unauthorized,
)
from netliver.fhir.outcome import FhirError, Issue
from netliver.settings import Settings

__all__ = [
    "ACCEPTED_ALGORITHMS",
    "APP_PATH_PREFIX",
    "EXEMPT_PATHS",
    "HOOK_PATHS",
    "INTERNAL_PATH_PREFIX",
    "INTERNAL_TOKEN_HEADER",
    "LAUNCH_PATHS",
    "PUBLISHED_INTERNAL_TOKENS",
    "SESSION_KEY",
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
    "session_token",
    "verify_bearer",
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
#: The tumour-board page: after a SMART launch (gateway/webapp/smart.py) its token comes from
#: the signed session cookie; the launch paths themselves are what obtains one.
APP_PATH_PREFIX = "/app/"
LAUNCH_PATHS = frozenset({"/app/launch", "/app/login", "/app/callback"})
SESSION_KEY = "smart"
#: Paths that accept the internal token as an alternative to a JWT (Orthanc's Lua script; the
#: catch-up call, which then requires the internal token itself).
HOOK_PATHS = frozenset({"/hooks/orthanc/stable-study", "/hooks/orthanc/catch-up"})
INTERNAL_TOKEN_HEADER = "X-Internal-Token"
#: Internal tokens written in this repository (settings default, docker-compose placeholder):
#: refused at start with ``AUTH_MODE=jwt``, where they would open the job calls to anyone.
PUBLISHED_INTERNAL_TOKENS = frozenset({Settings.internal_token, "change-me"})
_EXTENSION = "netliver.auth"

_AUTH_OFF = Principal("auth-off")
_ANONYMOUS = Principal("anonymous")
_INTERNAL = Principal("internal", client_id="internal", subject="internal")


def _forbidden(missing: Sequence[str]) -> FhirError:
    challenge = 'Bearer realm="netliver", error="insufficient_scope"'
    issues = [Issue("forbidden", f"the token's scopes do not allow this operation: {m}")
              for m in missing]
    return FhirError.from_issues(403, issues, headers={"WWW-Authenticate": challenge})



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
    if path in EXEMPT_PATHS or path in LAUNCH_PATHS or (
            path == CDS_DISCOVERY_PATH and request.method in ("GET", "HEAD")) or (
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
        token, launched = _bearer_token()
        principal = state.verifier.verify(token)
        if launched and principal.patient is None:
            # The page after an EHR or standalone launch: the token response named the patient.
            principal = dataclasses.replace(principal, patient=patient_context(session[SESSION_KEY].get("patient")))
        g.principal = principal


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
        raise unauthorized("no CDS client is trusted by this gateway (CDS_CLIENTS is empty)")
    return state.cds_verify(_bearer_token()[0], cds_audiences())


def _bearer_token() -> tuple[str, bool]:
    """The request's bearer token, and whether it is the one a SMART launch kept in the session."""
    header = request.headers.get("Authorization", "")
    if not header.strip() and request.path.startswith(APP_PATH_PREFIX):
        launched = session_token()  # the page after a SMART launch: the token kept in its session
        if launched:
            return launched, True
    if not header.strip():
        raise unauthorized("no bearer token: send 'Authorization: Bearer <JWT>'", code="login")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise unauthorized("the Authorization header is not 'Bearer <JWT>'", code="login")
    return token, False


def _check_internal_token(settings: Settings) -> Principal:
    provided = request.headers.get(INTERNAL_TOKEN_HEADER)
    if provided is None:
        raise unauthorized(f"internal endpoint: send the {INTERNAL_TOKEN_HEADER} header",
                            code="login")
    expected = settings.internal_token
    if not expected or not hmac.compare_digest(provided.encode(), expected.encode()):
        raise unauthorized(f"the {INTERNAL_TOKEN_HEADER} header is wrong")
    return _INTERNAL


def session_token() -> str | None:
    """The access token of this browser's SMART launch, while it is unexpired."""
    held = session.get(SESSION_KEY) or {}
    if not isinstance(held, dict) or not held.get("access_token") or float(held.get("expires_at", 0)) <= time.time():
        return None
    return str(held["access_token"])


def verify_bearer(token: str) -> Principal:
    """Verify ``token`` as the gateway verifies bearer tokens (401 ``FhirError`` when refused)."""
    verifier = _state().verifier
    if verifier is None:
        raise unauthorized("tokens are not checked with AUTH_MODE=off")
    principal: Principal = verifier.verify(token)
    return principal


def current_principal() -> Principal | None:
    """The caller of the current request, once :func:`init_auth` has authenticated it."""
    principal = g.get("principal")
    return principal if isinstance(principal, Principal) else None


def current_client_id() -> str | None:
    """The calling client's id (``client_id``, else ``azp``, else ``sub``; ``internal`` for the
    internal token), or None when the caller is not identified (auth off, exempt paths)."""
    principal = current_principal()
    return principal.client_id if principal is not None else None


def require_scopes(read: Iterable[str] = (), write: Iterable[str] = (), *,
                   compartment: bool = False) -> str | None:
    """Raise ``FhirError`` 403 unless the caller's scopes cover reading ``read`` and writing
    ``write`` resource types (see the module docstring for the mapping). A no-op while
    authentication is off and for the internal token; 401 when the request carries no
    authenticated caller at all.

    Returns None when ``system/`` or ``user/`` scopes cover everything. A view passing
    ``compartment=True`` can confine itself to one patient: when only the token's ``patient/``
    scopes cover it, it gets that patient's id and must answer within that patient's
    compartment (:mod:`gateway.compartment`)."""
    principal = current_principal()
    if principal is None or principal.kind == "anonymous":
        raise unauthorized("this operation needs an authenticated caller", code="login")
    if principal.unrestricted:
        return None
    read, write = tuple(read), tuple(write)
    missing = missing_scopes(principal.scopes, read, write)
    if not missing:
        return None
    if missing_scopes(principal.scopes, read, write, with_patient=True):
        raise _forbidden(missing_scopes(principal.scopes, read, write,
                                        with_patient=any(s.context == "patient" for s in principal.scopes)))
    # patient/ scopes cover what system/ and user/ do not
    held = " ".join(sorted({f"patient/{s.resource_type}" for s in principal.scopes if s.context == "patient"}))
    if not compartment:
        raise _forbidden([f"{request.method} {request.path} is not confined to one patient, so the "
                          f"token's patient/ scopes ({held}) do not allow it: it needs system/ or user/ scopes"])
    if principal.patient is None:
        raise _forbidden([f"the token's patient/ scopes ({held}) come without a patient in context "
                          "(no 'patient' claim): they allow nothing"])
    return principal.patient


def readable_types(types: Iterable[str]) -> set[str]:
    """Those of ``types`` the caller's scopes let it read (``patient/`` scopes count: a view
    confined to a patient filters by compartment as well). Everything while authentication is
    off and for unrestricted callers."""
    wanted = set(types)
    principal = current_principal()
    if principal is None or principal.unrestricted:
        return wanted
    return {t for t in wanted if not missing_scopes(principal.scopes, [t], with_patient=True)}


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
