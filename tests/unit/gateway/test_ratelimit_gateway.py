"""``gateway.ratelimit`` against the real Redis at 127.0.0.1:6379, and its in-memory fallback.

Each test uses its own key prefix and a fixed clock, so counts never leak between tests and
no test depends on where in the wall-clock minute it runs.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask, jsonify
from flask.testing import FlaskClient

from gateway.auth import init_auth, require_scopes
from gateway.ratelimit import REDIS_RETRY_S, RateLimiter, init_rate_limit
from netliver.settings import Settings
from netliver.web import create_base_app
from tests.support.jwks import AUDIENCE, ISSUER, JwksServer

pytestmark = pytest.mark.unit

REDIS_URL = "redis://127.0.0.1:6379/0"
#: 15 s into a minute window: the next window starts 45 s later.
WINDOW_START = 1_800_000_000.0  # a multiple of 60
T0 = WINDOW_START + 15
INTERNAL_TOKEN = "test-internal-secret-rl"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of its own; every key under it is deleted afterwards."""
    value = f"netliver:test:ratelimit:{uuid.uuid4().hex}:"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{value}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def real_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # the suite needs Redis: fail loudly rather than test the fallback by accident
    yield client
    client.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_app(settings: Settings, prefix: str, clock: Clock,
             redis_client: redis.Redis | None = None) -> tuple[Flask, RateLimiter | None]:
    app = create_base_app("gateway", "0", settings)
    init_auth(app, settings)
    limiter = init_rate_limit(app, settings, prefix=prefix, clock=clock,
                              redis_client=redis_client)

    @app.get("/health")
    def health() -> Any:
        return jsonify(status="ok")

    @app.get("/fhir/Observation")
    def search() -> Any:
        require_scopes(read=["Observation"])
        return jsonify(ok=True)

    @app.post("/internal/jobs/<job_id>/progress")
    def progress(job_id: str) -> Any:
        return jsonify(ok=True)

    return app, limiter


def off_settings(limit: int, redis_url: str = REDIS_URL) -> Settings:
    return Settings(auth_mode="off", rate_limit_per_minute=limit, redis_url=redis_url,
                    internal_token=INTERNAL_TOKEN)


def get(client: FlaskClient, path: str = "/fhir/Observation", addr: str = "192.0.2.10",
        headers: dict[str, str] | None = None) -> Any:
    return client.get(path, environ_base={"REMOTE_ADDR": addr}, headers=headers or {})


def test_limit_then_429_with_retry_after(prefix: str, real_redis: redis.Redis) -> None:
    app, limiter = make_app(off_settings(3), prefix, Clock())
    http = app.test_client()
    for expected_remaining in (2, 1, 0):
        resp = get(http)
        assert resp.status_code == 200
        assert resp.headers["X-RateLimit-Remaining"] == str(expected_remaining)
    resp = get(http)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "45"
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "throttled"
    assert limiter is not None and not limiter.redis_down
    # the count lives in Redis under the prefix, with an expiry
    keys = [k.decode() for k in real_redis.scan_iter(f"{prefix}*")]
    assert keys == [f"{prefix}addr:192.0.2.10:{int(T0 // 60)}"]
    assert int(real_redis.get(keys[0]) or 0) == 4
    assert 0 < real_redis.ttl(keys[0]) <= 120


def test_the_next_window_starts_afresh(prefix: str, real_redis: redis.Redis) -> None:
    clock = Clock()
    http = make_app(off_settings(2), prefix, clock)[0].test_client()
    assert [get(http).status_code for _ in range(3)] == [200, 200, 429]
    clock.now = WINDOW_START + 59.5
    resp = get(http)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "1"
    clock.now = WINDOW_START + 60
    assert get(http).status_code == 200


def test_clients_are_counted_apart(prefix: str, real_redis: redis.Redis) -> None:
    http = make_app(off_settings(1), prefix, Clock())[0].test_client()
    assert get(http, addr="192.0.2.1").status_code == 200
    assert get(http, addr="192.0.2.1").status_code == 429
    assert get(http, addr="192.0.2.2").status_code == 200


def test_workers_share_the_count_through_redis(prefix: str, real_redis: redis.Redis) -> None:
    """Two app instances (two gunicorn workers) with one Redis enforce one limit."""
    worker_a = make_app(off_settings(4), prefix, Clock())[0].test_client()
    worker_b = make_app(off_settings(4), prefix, Clock())[0].test_client()
    statuses = [get(w).status_code for w in (worker_a, worker_b, worker_a, worker_b, worker_a)]
    assert statuses == [200, 200, 200, 200, 429]


def test_health_and_internal_token_are_exempt(prefix: str, real_redis: redis.Redis) -> None:
    http = make_app(off_settings(1), prefix, Clock())[0].test_client()
    assert get(http).status_code == 200
    assert get(http).status_code == 429
    for _ in range(5):
        assert get(http, "/health").status_code == 200
        resp = http.post("/internal/jobs/j/progress", headers={"X-Internal-Token": INTERNAL_TOKEN},
                         environ_base={"REMOTE_ADDR": "192.0.2.10"})
        assert resp.status_code == 200


def test_zero_is_unlimited(prefix: str, real_redis: redis.Redis) -> None:
    app, limiter = make_app(off_settings(0), prefix, Clock())
    assert limiter is None
    http = app.test_client()
    assert all(get(http).status_code == 200 for _ in range(50))
    assert list(real_redis.scan_iter(f"{prefix}*")) == []


def test_negative_limit_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="RATE_LIMIT_PER_MINUTE"):
        make_app(off_settings(-1), prefix, Clock())


def test_authenticated_clients_are_counted_by_client_id(prefix: str,
                                                        real_redis: redis.Redis) -> None:
    with JwksServer() as idp:
        settings = Settings(auth_mode="jwt", auth_jwks_url=idp.jwks_url, auth_issuer=ISSUER,
                            auth_audience=AUDIENCE, rate_limit_per_minute=2, redis_url=REDIS_URL,
                            internal_token=INTERNAL_TOKEN)
        http = make_app(settings, prefix, Clock())[0].test_client()
        ris = {"Authorization": f"Bearer {idp.mint('system/*.read', client_id='ris')}"}
        cds = {"Authorization": f"Bearer {idp.mint('system/*.read', client_id='cds')}"}
        # the same client from two addresses shares one budget
        assert get(http, addr="192.0.2.1", headers=ris).status_code == 200
        assert get(http, addr="192.0.2.2", headers=ris).status_code == 200
        assert get(http, addr="192.0.2.3", headers=ris).status_code == 429
        # another client from the same address has its own
        assert get(http, addr="192.0.2.1", headers=cds).status_code == 200
        keys = sorted(k.decode() for k in real_redis.scan_iter(f"{prefix}*"))
        window = int(T0 // 60)
        assert keys == [f"{prefix}client:cds:{window}", f"{prefix}client:ris:{window}"]


def test_redis_unreachable_falls_back_to_memory(prefix: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    settings = off_settings(3, redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    with caplog.at_level(logging.WARNING, logger="netliver.gateway.ratelimit"):
        app, limiter = make_app(settings, prefix, Clock())
        http = app.test_client()
        assert [get(http).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert limiter is not None and limiter.redis_down
    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1  # logged once per outage, not per request
    assert get(http, addr="192.0.2.99").status_code == 200


def test_back_to_redis_when_it_returns(prefix: str, real_redis: redis.Redis,
                                       caplog: pytest.LogCaptureFixture) -> None:
    monotonic = Clock(0.0)
    dead = redis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0",
                                socket_connect_timeout=0.25, socket_timeout=0.25)
    limiter = RateLimiter(5, dead, prefix=prefix, clock=Clock(), monotonic=monotonic)
    with caplog.at_level(logging.WARNING, logger="netliver.gateway.ratelimit"):
        assert limiter.hit("c").backend == "memory"
        assert limiter.redis_down
        monotonic.now = REDIS_RETRY_S + 0.1  # retried, still down: no second warning
        assert limiter.hit("c").backend == "memory"
        limiter.redis = real_redis
        monotonic.now += REDIS_RETRY_S / 2  # still in the back-off: Redis is not tried
        assert limiter.hit("c").backend == "memory"
        monotonic.now += REDIS_RETRY_S
        verdict = limiter.hit("c")
    assert verdict.backend == "redis"
    assert verdict.count == 1
    assert not limiter.redis_down
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unreachable" in m for m in messages) == 1
    assert sum("Redis reachable again" in m for m in messages) == 1
