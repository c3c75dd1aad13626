"""The gateway's FHIR store: embedded SQL (SQLite / PostgreSQL) or an upstream FHIR server.

:func:`make_store` picks one from the settings (``FHIR_UPSTREAM_URL`` set → upstream, else the
SQL store on ``DATABASE_URL``). Modules are imported lazily so that importing the protocol does
not load SQLAlchemy or requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.store.base import FhirStore, StoreFactory, etag, is_resource_type, parse_etag

if TYPE_CHECKING:
    from netliver.settings import Settings

__all__ = ["FhirStore", "StoreFactory", "etag", "is_resource_type", "make_store", "parse_etag"]


def make_store(settings: Settings) -> FhirStore:
    """The store configured by ``settings``: an :class:`~gateway.store.upstream.UpstreamStore`
    when ``fhir_upstream_url`` is set, else a :class:`~gateway.store.sql.SqlStore` on
    ``database_url`` (a relative SQLite path is created under its folder)."""
    if settings.fhir_upstream_url:
        from gateway.store.upstream import UpstreamStore

        return UpstreamStore(settings.fhir_upstream_url, token=settings.fhir_upstream_token,
                             timeout_s=settings.service_timeout_s,
                             transaction_size=settings.fhir_upstream_transaction_size)
    from gateway.store.sql import SqlStore

    return SqlStore(settings.database_url)
