"""The embedded store's database: its tables and its engine (SQLite or PostgreSQL).

Tables (``docs/store.md``): the current version of each resource, every version, and the token
and reference search indexes. The engine sets SQLite up for several processes (WAL,
``busy_timeout``, ``BEGIN IMMEDIATE`` for writes) and PostgreSQL with pre-ping and a short
connect timeout; neither logs statement parameters (patient data).
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

__all__ = ["build_metadata", "make_engine"]


def build_metadata(metadata: MetaData | None = None) -> tuple[MetaData, dict[str, Table]]:
    """The store's tables on ``metadata`` (a new one by default)."""
    md = metadata or MetaData()
    resource = Table(
        "fhir_resource", md,
        Column("resource_type", String(64), primary_key=True),
        Column("resource_id", String(64), primary_key=True),
        Column("version_id", Integer, nullable=False),
        Column("last_updated_us", BigInteger, nullable=False),
        Column("deleted", Boolean, nullable=False, default=False),
        Column("content", Text, nullable=True),
        Index("ix_fhir_resource_type_updated", "resource_type", "last_updated_us"),
    )
    version = Table(
        "fhir_resource_version", md,
        Column("resource_type", String(64), primary_key=True),
        Column("resource_id", String(64), primary_key=True),
        Column("version_id", Integer, primary_key=True),
        Column("last_updated_us", BigInteger, nullable=False),
        Column("deleted", Boolean, nullable=False, default=False),
        Column("content", Text, nullable=True),
    )
    token = Table(
        "fhir_search_token", md,
        Column("resource_type", String(64), primary_key=True),
        Column("resource_id", String(64), primary_key=True),
        Column("param", String(64), primary_key=True),
        Column("system", String(1024), primary_key=True),
        Column("code", String(1024), primary_key=True),
        Index("ix_fhir_search_token_lookup", "resource_type", "param", "code", "system"),
    )
    reference = Table(
        "fhir_search_reference", md,
        Column("resource_type", String(64), primary_key=True),
        Column("resource_id", String(64), primary_key=True),
        Column("param", String(64), primary_key=True),
        Column("target_type", String(64), primary_key=True),
        Column("target_id", String(64), primary_key=True),
        Index("ix_fhir_search_reference_lookup", "resource_type", "param", "target_id", "target_type"),
    )
    return md, {"resource": resource, "version": version, "token": token, "reference": reference}


def _set_wal(cursor: Any, attempts: int = 50) -> None:
    """Switch a SQLite file to WAL. Switching needs an exclusive lock that SQLite's busy timeout
    does not wait for, so processes opening a new file together (gunicorn workers) retry."""
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


def make_engine(database_url: str, *, echo: bool = False) -> Engine:
    """An engine for SQLite (file: WAL, busy_timeout, ``BEGIN IMMEDIATE`` for writes) or
    PostgreSQL (psycopg 3, pre-ping, short connect timeout)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = 5
        return create_engine(url, echo=echo, pool_pre_ping=True, connect_args=connect_args,
                             hide_parameters=True)  # errors must not log patient data
    database = url.database or ""
    memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not memory:
        folder = os.path.dirname(os.path.abspath(database))
        os.makedirs(folder, exist_ok=True)
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if memory:
        options["poolclass"] = StaticPool
    engine = create_engine(url, echo=echo, hide_parameters=True, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        if not memory:
            _set_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Every transaction takes the write lock up front (so a transaction that reads then
        # writes never fails on a lock upgrade), except the store's own read-only ones.
        read_only = conn.get_execution_options().get("netliver_read", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
