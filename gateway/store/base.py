"""The FHIR store interface of the gateway.

Results of every operation are written to a FHIR store (``docs/store.md``): either the gateway's
embedded SQL store (:class:`gateway.store.sql.SqlStore`) or an upstream FHIR R4 server
(:class:`gateway.store.upstream.UpstreamStore`). Both implement :class:`FhirStore`, so the REST
layer, the operations and the job runner do not know which one they talk to.

Every error is a :class:`netliver.fhir.outcome.FhirError`: 400 malformed input or unknown search
parameter, 404 unknown resource, 409 version conflict, 410 deleted, 412 ``If-Match`` or
``ifNoneExist`` precondition failed, 422 valid but unusable (e.g. a Bundle of the wrong type),
503 the database or upstream server is unreachable (with ``Retry-After``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from netliver.fhir.models import model_class
from netliver.fhir.outcome import FhirError

__all__ = [
    "FhirStore",
    "StoreFactory",
    "etag",
    "is_resource_type",
    "parse_etag",
    "require_resource_type",
]


@runtime_checkable
class FhirStore(Protocol):
    """A FHIR R4 resource store (FHIR R4 §3.1.0 RESTful API interactions)."""

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """The current version; 404 if unknown, 410 if deleted."""
        ...

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> dict[str, Any]:
        """One version; 404 if unknown, 410 if that version is a deletion."""
        ...

    def search(self, resource_type: str, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        """A ``searchset`` Bundle (``total``, ``entry[].fullUrl``, ``entry[].search.mode``,
        ``link`` self/next). ``base_url`` is the FHIR base callers see (``…/fhir``).
        An unknown parameter is a 400 naming it."""
        ...

    def put(self, resource: dict[str, Any], *, if_match: str | None = None) -> tuple[dict[str, Any], bool]:
        """Create or update by id; answers the stored resource and whether it was created.
        Content equal to the current version (ignoring ``meta.versionId``/``meta.lastUpdated``)
        writes nothing and answers the current version."""
        ...

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Create with a server-assigned UUID id."""
        ...

    def delete(self, resource_type: str, resource_id: str) -> None:
        """Soft delete (a new version marked deleted); idempotent."""
        ...

    def history(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """A ``history`` Bundle of every version, newest first."""
        ...

    def history_all(self, resource_type: str | None, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        """Type history (``resource_type``) or system history (None), newest first; ``params``
        are ``_count`` and ``_since``."""
        ...

    def transaction(self, bundle: dict[str, Any], base_url: str) -> dict[str, Any]:
        """Process a ``transaction`` (atomic) or ``batch`` Bundle; answers the
        ``transaction-response`` / ``batch-response`` Bundle."""
        ...

    def health(self) -> dict[str, Any]:
        """``{"status": "pass" | "fail", "detail": ...}``."""
        ...


#: How the REST layer and the jobs obtain the store of the running app.
StoreFactory = Callable[[], FhirStore]

_ABSTRACT_TYPES = frozenset({"Resource", "DomainResource"})


def is_resource_type(name: str) -> bool:
    """True for a concrete R4 resource type name (``Observation``), False for data types
    (``Coding``), abstract types and unknown names."""
    if not name or not name[:1].isupper() or name in _ABSTRACT_TYPES:
        return False
    try:
        cls = model_class(name)
        resource_cls = model_class("Resource")
    except FhirError:
        return False
    return isinstance(cls, type) and issubclass(cls, resource_cls)


def require_resource_type(name: str, expression: str = "resourceType") -> str:
    """``name`` if it is a concrete resource type, else ``FhirError`` 400."""
    if not is_resource_type(name):
        raise FhirError(400, "invalid", f"unknown FHIR resource type {name!r}", expression)
    return name


def etag(version_id: str) -> str:
    """The weak ETag of a version (FHIR R4 §3.1.0.1.5): ``W/"3"``."""
    return f'W/"{version_id}"'


def parse_etag(value: str) -> str:
    """The version id in an ``If-Match`` / ETag value: ``W/"3"``, ``"3"`` or ``3`` → ``3``."""
    text = value.strip()
    if text.startswith(("W/", "w/")):
        text = text[2:]
    text = text.strip().strip('"').strip()
    if not text:
        raise FhirError(400, "invalid", f"not a version ETag: {value!r}", "If-Match")
    return text
