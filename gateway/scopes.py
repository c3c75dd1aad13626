"""SMART scopes and the caller they describe (pure: no Flask, no I/O).

HL7 SMART App Launch 2.x, "Scopes and Launch Context": v1 ``<ctx>/<Type>.read|write|*`` and
v2 ``<ctx>/<Type>.<cruds letters>``. How they map to the gateway's read/write checks is
described in :mod:`gateway.auth` and ``docs/auth.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["BROAD_CONTEXTS", "Principal", "Scope", "missing_scopes", "parse_scopes"]

#: Contexts whose scopes grant a type on every patient; ``patient/`` scopes grant it only within
#: the token's patient (:mod:`gateway.compartment`), where a view confines itself to it.
BROAD_CONTEXTS = frozenset({"system", "user"})
_ALL_CONTEXTS = frozenset({"system", "user", "patient"})
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

    def covers(self, resource_type: str, *, write: bool, contexts: frozenset[str] = BROAD_CONTEXTS) -> bool:
        if self.context not in contexts:
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
                   write: Iterable[str] = (), *, with_patient: bool = False) -> list[str]:
    """One sentence per resource type whose read or write ``scopes`` do not cover (empty = allowed).

    ``system/`` and ``user/`` scopes count; ``patient/`` scopes too when ``with_patient``."""
    held = tuple(scopes)
    contexts = _ALL_CONTEXTS if with_patient else BROAD_CONTEXTS
    also = "user/ likewise" + ("; patient/ within the token's patient" if with_patient else "")
    missing: list[str] = []
    for resource_type in dict.fromkeys(read):
        if not any(s.covers(resource_type, write=False, contexts=contexts) for s in held):
            missing.append(f"reading {resource_type} needs system/{resource_type}.r "
                           f"(or .s, or v1 system/{resource_type}.read; {also})")
    for resource_type in dict.fromkeys(write):
        if not any(s.covers(resource_type, write=True, contexts=contexts) for s in held):
            missing.append(f"writing {resource_type} needs system/{resource_type}.c "
                           f"(or .u, or v1 system/{resource_type}.write; {also})")
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
    #: The patient in context (the token's ``patient`` claim, or the page's SMART launch): what
    #: its ``patient/`` scopes are confined to.
    patient: str | None = None

    @property
    def unrestricted(self) -> bool:
        return self.kind in ("internal", "auth-off")
