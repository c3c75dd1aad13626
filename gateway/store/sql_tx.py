"""Connections and transactions of the embedded store: database errors become FHIR errors, lost
races are retried.

A unique-key violation, a deadlock or a serialization failure (SQLSTATE 40001 / 40P01) means a
concurrent writer won a race: :class:`Retry` is raised inside and the write runs again (up to
:data:`ATTEMPTS` times) or, in the caller's transaction, answers 409. A database that does not
answer is 503 with ``Retry-After``; a value it refuses is 400.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
)

from netliver.fhir.outcome import FhirError

__all__ = ["ATTEMPTS", "Retry", "conflict", "mapped_errors", "read_connection", "run_write", "write_transaction"]

_log = logging.getLogger("netliver.gateway.store")
_T = TypeVar("_T")
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock (PostgreSQL)
ATTEMPTS = 5


class Retry(Exception):
    """A write lost a race (unique key, deadlock, serialization): run it again."""


def conflict(diagnostics: str = "a concurrent write conflicted; retry the request") -> FhirError:
    """The 409 a caller gets when its write lost a race it cannot retry itself."""
    return FhirError(409, "conflict", diagnostics, headers={"Retry-After": "1"})


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Database errors as :class:`Retry` (a lost race) or :class:`FhirError` (400, 503)."""
    try:
        yield
    except IntegrityError as exc:
        raise Retry(str(exc.orig)) from exc
    except DataError as exc:
        raise FhirError(400, "invalid", f"the database refused a value: {type(exc.orig).__name__}") from exc
    except (OperationalError, InterfaceError, InternalError) as exc:  # InternalError: e.g. read-only
        if getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
            raise Retry(str(exc.orig)) from exc
        _log.warning("database unavailable", extra={"error": type(exc.orig).__name__})
        raise FhirError(503, "transient", f"the FHIR store's database is unavailable "
                        f"({type(exc.orig).__name__})", headers={"Retry-After": "5"}) from exc
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
            raise Retry(str(exc.orig)) from exc
        raise


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction, committed at the end of the block, errors mapped."""
    with mapped_errors(), engine.connect() as conn, conn.begin():
        yield conn


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """One read transaction; on PostgreSQL REPEATABLE READ, so a search's total and its page
    come from one snapshot."""
    with mapped_errors(), engine.connect() as conn:
        conn.execution_options(netliver_read=True)
        if engine.dialect.name != "sqlite":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def run_write(engine: Engine, fn: Callable[[Connection], _T], conn: Connection | None) -> _T:
    """Run ``fn`` in the caller's transaction (inside a SAVEPOINT, so a failed write leaves
    nothing behind even if the caller goes on), or in a new one retried after lost races."""
    if conn is not None:
        try:
            with mapped_errors(), conn.begin_nested():
                return fn(conn)
        except Retry as exc:
            raise conflict() from exc
    for attempt in range(ATTEMPTS):
        try:
            with write_transaction(engine) as own:
                return fn(own)
        except Retry:
            if attempt == ATTEMPTS - 1:
                break
            time.sleep(0.01 * (attempt + 1))
    raise conflict("concurrent writes kept conflicting; retry the request")
