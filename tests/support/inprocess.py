"""A gateway wired to the real services in this process: the gateway's real service client over a
session that hands each call to a service's own Flask app (its test client), and the real SQL
store on a SQLite file. What runs over gunicorn in the e2e suite runs here without processes."""

from __future__ import annotations

from json import dumps
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.deps import GatewayDeps, build_deps
from gateway.service_client import ServiceClient
from gateway.store.sql import SqlStore
from netliver.settings import Settings


class ServiceSession:
    """Stands in for ``requests.Session`` in the gateway's service client: a POST to
    ``http://<service>.test/...`` is answered by that service's Flask app."""

    def __init__(self, apps: dict[str, Flask]) -> None:
        self.clients = {name: app.test_client() for name, app in apps.items()}

    def post(self, url: str, json: Any = None, params: Any = None, timeout: float = 0,
             headers: dict[str, str] | None = None, data: bytes | None = None) -> requests.Response:
        host, _, path = url.removeprefix("http://").partition("/")
        body = dumps(json) if data is None else data  # bytes: the caller's body, passed on as sent
        answer = self.clients[host.removesuffix(".test")].post("/" + path, data=body,
                                                               query_string=params or {}, headers=headers or {})
        resp = requests.Response()
        resp.status_code = answer.status_code
        resp._content = answer.get_data()
        resp.headers["Content-Type"] = answer.content_type or "application/json"
        return resp

    def get(self, url: str, timeout: float = 0) -> requests.Response:
        resp = requests.Response()
        resp.status_code = 200
        resp._content = dumps({"version": "test"}).encode()
        return resp


class NoQueue:
    def send(self, job_id: str) -> None:
        raise AssertionError("no job is sent in these tests")

    def ping(self) -> dict[str, Any]:
        return {"status": "pass"}


def gateway_with_services(tmp_path: Path, apps: dict[str, Flask],
                          env: dict[str, str] | None = None) -> tuple[GatewayDeps, FlaskClient]:
    """The gateway (auth off, unless ``env`` says otherwise) over an SQLite store, calling
    ``apps`` in process."""
    settings = Settings.from_env({
        "AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "DOSIMETRY_URL": "http://dosimetry.test", "ELIGIBILITY_URL": "http://eligibility.test",
        "RESPONSE_URL": "http://response.test",
        "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING",
        **(env or {}),
    })
    deps = build_deps(settings, store=SqlStore(settings.database_url),
                      services=ServiceClient(settings, session=ServiceSession(apps)),  # type: ignore[arg-type]
                      dispatcher=NoQueue())
    return deps, create_app(settings, deps=deps).test_client()
