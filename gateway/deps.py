"""The gateway's dependencies, typed, built once by the composition root.

:func:`build_deps` makes the real parts from the settings (the FHIR store, the services' HTTP
client, the Celery job queue, the job service on the SQL database); a test passes its own store,
service client or queue instead and gets the same wiring around them. The views receive the
:class:`GatewayDeps`, not a bag of closures.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from flask import request

from gateway.jobs.api import JobService
from gateway.jobs.dispatch import Dispatcher, JobQueue
from gateway.jobs.records import JobStore
from gateway.service_client import ServiceCaller, ServiceClient
from gateway.store import make_store
from gateway.store.base import FhirStore
from gateway.store.sql import SqlStore
from netliver.settings import Settings

__all__ = ["GatewayDeps", "build_deps", "fhir_base_url"]


def fhir_base_url(settings: Settings) -> str:
    """The FHIR base callers see (``PUBLIC_BASE_URL`` or the request's root, then ``/fhir``).
    Needs a request context (a real request, or the catch-up thread's test context)."""
    root = settings.public_base_url or request.url_root
    return root.rstrip("/") + "/fhir"


@dataclass(frozen=True)
class GatewayDeps:
    """Everything the gateway's views and background threads use.

    ``database`` holds the job records and the PACS catch-up cursor: the embedded store's own
    database, or (with an upstream FHIR server as the store) a SQL database of its own.
    """

    settings: Settings
    store: FhirStore
    services: ServiceCaller
    jobs: JobService
    dispatcher: JobQueue
    database: SqlStore

    def fhir_base(self) -> str:
        return fhir_base_url(self.settings)

    def get_store(self) -> FhirStore:
        """The store, for views built on a store factory (:mod:`gateway.fhir_rest`)."""
        return self.store


def build_deps(settings: Settings, *, store: FhirStore | None = None, services: ServiceCaller | None = None,
               dispatcher: JobQueue | None = None) -> GatewayDeps:
    """The real dependencies for ``settings``; any of ``store``, ``services`` and ``dispatcher``
    given replaces the one the settings would make."""
    store = store if store is not None else make_store(settings)
    database = store if isinstance(store, SqlStore) else SqlStore(settings.database_url)
    queue = dispatcher if dispatcher is not None else Dispatcher(settings)
    jobs = JobService(jobs=JobStore(database.engine, database.metadata), store=store, dispatcher=queue,
                      base_url_of=partial(fhir_base_url, settings), lease_s=settings.job_lease_s)
    return GatewayDeps(settings=settings, store=store,
                       services=services if services is not None else ServiceClient(settings),
                       jobs=jobs, dispatcher=queue, database=database)
