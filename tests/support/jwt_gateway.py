"""The gateway under test with ``AUTH_MODE=jwt``, trusting a :class:`~tests.support.jwks.JwksServer`.

Its own SQLite store under ``tmp``; the PACS, the three services and anything else it could
call point at a port nothing listens on, so no test reaches a process someone else runs;
no catch-up, job sweep or rate limit."""

from __future__ import annotations

from pathlib import Path

from tests.support.jwks import JwksServer

__all__ = ["CLOSED_PORT_URL", "INTERNAL_TOKEN", "jwt_gateway_env"]

CLOSED_PORT_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
INTERNAL_TOKEN = "a-long-test-secret-for-the-workers"


def jwt_gateway_env(idp: JwksServer, tmp: Path, **more: str) -> dict[str, str]:
    """The environment (``Settings.from_env``) of that gateway; ``more`` adds or overrides."""
    env = {"AUTH_MODE": "jwt", "AUTH_JWKS_URL": idp.jwks_url, "AUTH_ISSUER": idp.issuer,
           "AUTH_AUDIENCE": idp.audience, "DATABASE_URL": f"sqlite:///{tmp / 'store.db'}",
           "ORTHANC_URL": CLOSED_PORT_URL, "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0",
           "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING", "INTERNAL_TOKEN": INTERNAL_TOKEN,
           "ELIGIBILITY_URL": CLOSED_PORT_URL, "RESPONSE_URL": CLOSED_PORT_URL, "DOSIMETRY_URL": CLOSED_PORT_URL}
    env.update(more)
    return env
