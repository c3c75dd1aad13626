"""A real PostgreSQL for tests: the local cluster, and one throwaway database per test session.

The server is the Debian cluster listening on 127.0.0.1:5432 with trust authentication for the
``postgres`` user (``NETLIVER_TEST_PG_HOST`` / ``NETLIVER_TEST_PG_PORT`` / ``NETLIVER_TEST_PG_USER``
override). When ``pg_isready`` fails, :func:`ensure_running` starts it with
``pg_ctlcluster --skip-systemctl-redirect <version> main start`` (the version is the folder in
``/etc/postgresql``). :func:`session_database` creates ``netliver_test_<random>`` once per pytest
session and drops it at the end of the session.

No pytest import at module level, so scripts can use it too.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = [
    "PostgresUnavailable",
    "create_database",
    "database_url",
    "drop_database",
    "emptied_session_database",
    "ensure_running",
    "is_ready",
    "session_database",
]

HOST = os.environ.get("NETLIVER_TEST_PG_HOST", "127.0.0.1")
PORT = int(os.environ.get("NETLIVER_TEST_PG_PORT", "5432"))
USER = os.environ.get("NETLIVER_TEST_PG_USER", "postgres")
_CONFIG_DIR = Path("/etc/postgresql")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed, or its cluster did not start."""


def database_url(name: str, *, driver: str = "postgresql+psycopg") -> str:
    """The SQLAlchemy URL of database ``name`` on the test server."""
    return f"{driver}://{USER}@{HOST}:{PORT}/{name}"


def is_ready(timeout_s: int = 3) -> bool:
    """True when ``pg_isready`` reports the server accepting connections."""
    binary = shutil.which("pg_isready")
    if binary is None:
        return False
    result = subprocess.run([binary, "-h", HOST, "-p", str(PORT), "-t", str(timeout_s)],
                            capture_output=True, check=False)
    return result.returncode == 0


def ensure_running(wait_s: float = 30.0) -> None:
    """Start the local cluster if it is not answering; raise :class:`PostgresUnavailable` if it
    cannot be started."""
    if is_ready():
        return
    ctl = shutil.which("pg_ctlcluster")
    versions = sorted(p.name for p in _CONFIG_DIR.iterdir()) if _CONFIG_DIR.is_dir() else []
    if ctl is None or not versions:
        raise PostgresUnavailable("PostgreSQL is not installed (no pg_ctlcluster or /etc/postgresql)")
    result = subprocess.run([ctl, "--skip-systemctl-redirect", versions[-1], "main", "start"],
                            capture_output=True, text=True, check=False)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if is_ready(1):
            return
        time.sleep(0.5)
    raise PostgresUnavailable(f"PostgreSQL {versions[-1]} did not start: {result.stderr.strip() or result.stdout.strip()}")


def _admin_connection() -> Any:
    import psycopg

    return psycopg.connect(host=HOST, port=PORT, user=USER, dbname="postgres", autocommit=True,
                           connect_timeout=5)


def create_database(prefix: str = "netliver_test") -> str:
    """Create an empty database with a random name; returns its name."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    """Drop a database made by :func:`create_database`, closing its other connections."""
    if not name.startswith("netliver_test_"):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    with _admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def session_database(config: Any) -> str:
    """The URL of this pytest session's throwaway database (created on first use, dropped at
    the end of the session). ``config`` is ``request.config``."""
    cached = getattr(config, "_netliver_pg_url", None)
    if cached:
        return str(cached)
    ensure_running()
    name = create_database()
    url = database_url(name)
    config._netliver_pg_url = url
    config.add_cleanup(lambda: drop_database(name))
    return url


def emptied_session_database(config: Any) -> str:
    """:func:`session_database` with every row of the store's tables (and the tables other
    modules add to its metadata) deleted, so each test starts from an empty store."""
    from gateway.store.sql import SqlStore

    url = session_database(config)
    store = SqlStore(url)
    try:
        with store.begin() as conn:
            for table in reversed(store.metadata.sorted_tables):
                conn.execute(table.delete())
    finally:
        store.close()
    return url
