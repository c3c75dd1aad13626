"""Per-client rate limiting of the gateway: a fixed one-minute window counted in Redis.

Each request increments ``<prefix><client>:<minute number>`` with ``INCR`` and gives the key an
``EXPIRE`` of two minutes, so every gunicorn worker and every gateway replica behind the same
Redis shares one count. The client is the authenticated principal (``client_id``/``sub``, see
:func:`gateway.auth.current_client_id`), else the remote address. Above
``RATE_LIMIT_PER_MINUTE`` the answer is 429 ``throttled`` with ``Retry-After`` = the seconds to
the next window; ``0`` disables the limit.

Redis down never blocks traffic: the limiter logs the outage once, counts in process memory
(per worker, so the effective limit is looser) and tries Redis again after
:data:`REDIS_RETRY_S`. ``/health`` is never limited, nor are callers holding the internal token
(the dosimetry workers' progress reports and the PACS hook).

A fixed window lets a client send up to twice the limit across a window boundary; that bound is
accepted here for one Redis round trip per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from flask import Flask, Response, g, request

from gateway.auth import current_principal
from netliver.fhir.outcome import FhirError
from netliver.settings import Settings

__all__ = ["EXEMPT_PATHS", "REDIS_RETRY_S", "WINDOW_S", "RateLimiter", "Verdict", "init_rate_limit"]

_log = logging.getLogger("netliver.gateway.ratelimit")

WINDOW_S = 60
#: Paths never limited (health checks of orchestrators must always answer).
EXEMPT_PATHS = frozenset({"/health"})
#: After a Redis failure, seconds the limiter counts in memory before trying Redis again.
REDIS_RETRY_S = 5.0
#: Connect and read timeout of each Redis call, seconds (a slow Redis must not slow requests).
REDIS_TIMEOUT_S = 0.25
_EXTENSION = "netliver.ratelimit"


@dataclass(frozen=True)
class Verdict:
    """The outcome of counting one request."""

    allowed: bool
    count: int
    limit: int
    retry_after_s: int
    backend: str  # "redis" | "memory"

    @property
    def remaining(self) -> int:
        return max(self.limit - self.count, 0)


class RateLimiter:
    """Counts requests per client and window in Redis, or in memory while Redis is unreachable."""

    def __init__(self, limit_per_minute: int, redis_client: redis.Redis | None, *,
                 prefix: str = "netliver:ratelimit:",
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit_per_minute
        self.redis = redis_client
        self.prefix = prefix
        self.clock = clock
        self.monotonic = monotonic
        self._redis_down_since: float | None = None
        self._memory: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    @property
    def redis_down(self) -> bool:
        return self._redis_down_since is not None

    def hit(self, client: str) -> Verdict:
        """Count one request of ``client`` in the current window and judge it."""
        now = self.clock()
        window = int(now // WINDOW_S)
        retry_after_s = max(1, math.ceil((window + 1) * WINDOW_S - now))
        count = self._count_redis(client, window)
        backend = "redis"
        if count is None:
            count = self._count_memory(client, window)
            backend = "memory"
        return Verdict(count <= self.limit, count, self.limit, retry_after_s, backend)

    def _count_redis(self, client: str, window: int) -> int | None:
        if self.redis is None:
            return None
        down_since = self._redis_down_since
        if down_since is not None and self.monotonic() - down_since < REDIS_RETRY_S:
            return None
        key = f"{self.prefix}{client}:{window}"
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 2 * WINDOW_S)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            if down_since is None:
                _log.warning("Redis unreachable: rate limits are counted per process until it "
                             "is back", extra={"error": f"{type(exc).__name__}: {exc}"})
            self._redis_down_since = self.monotonic()
            return None
        if down_since is not None:
            _log.warning("Redis reachable again: rate limits are shared again")
            self._redis_down_since = None
        return int(count)

    def _count_memory(self, client: str, window: int) -> int:
        with self._lock:
            for old in [k for k in self._memory if k[1] < window]:
                del self._memory[old]
            count = self._memory.get((client, window), 0) + 1
            self._memory[(client, window)] = count
            return count


def _client_key() -> str:
    principal = current_principal()
    if principal is not None and principal.client_id:
        return f"client:{principal.client_id}"
    return f"addr:{request.remote_addr or 'unknown'}"


def init_rate_limit(app: Flask, settings: Settings, *, redis_client: redis.Redis | None = None,
                    prefix: str = "netliver:ratelimit:",
                    clock: Callable[[], float] = time.time) -> RateLimiter | None:
    """Limit every request of ``app`` to ``settings.rate_limit_per_minute`` per client.

    Call it after :func:`gateway.auth.init_auth`, so the client is known when counting. Returns
    the limiter (None when the limit is 0). ``redis_client`` replaces the client built from
    ``settings.redis_url``; ``prefix`` namespaces the Redis keys.
    """
    if settings.rate_limit_per_minute < 0:
        raise ValueError("RATE_LIMIT_PER_MINUTE must be 0 (unlimited) or more")
    if settings.rate_limit_per_minute == 0:
        _log.info("rate limiting is off (RATE_LIMIT_PER_MINUTE=0)")
        return None
    client = redis_client or redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S)
    limiter = RateLimiter(settings.rate_limit_per_minute, client, prefix=prefix, clock=clock)
    app.extensions[_EXTENSION] = limiter

    @app.before_request
    def _limit() -> None:
        if request.path in EXEMPT_PATHS:
            return
        principal = current_principal()
        if principal is not None and principal.kind == "internal":
            return
        verdict = limiter.hit(_client_key())
        g.rate_limit = verdict
        if not verdict.allowed:
            raise FhirError(
                429, "throttled",
                f"rate limit of {verdict.limit} requests per minute exceeded for this client; "
                f"retry in {verdict.retry_after_s} s",
                headers={"Retry-After": str(verdict.retry_after_s),
                         "X-RateLimit-Limit": str(verdict.limit),
                         "X-RateLimit-Remaining": "0"})

    @app.after_request
    def _headers(resp: Response) -> Response:
        verdict = g.get("rate_limit")
        if isinstance(verdict, Verdict) and verdict.allowed:
            resp.headers["X-RateLimit-Limit"] = str(verdict.limit)
            resp.headers["X-RateLimit-Remaining"] = str(verdict.remaining)
        return resp

    return limiter
