"""Fixtures of the fast tests: a token issuer and the gateway that trusts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from netliver.settings import Settings
from tests.support.jwks import JwksServer
from tests.support.jwt_gateway import jwt_gateway_env


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    """A JWKS endpoint and token minter (the hospital's authorisation server), one per module."""
    with JwksServer() as server:
        yield server


@pytest.fixture
def jwt_client(tmp_path: Path, idp: JwksServer) -> FlaskClient:
    """The gateway with ``AUTH_MODE=jwt`` trusting ``idp``, on its own store (see
    :func:`tests.support.jwt_gateway.jwt_gateway_env`)."""
    return create_app(Settings.from_env(jwt_gateway_env(idp, tmp_path))).test_client()
