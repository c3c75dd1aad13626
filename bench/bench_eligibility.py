"""Benchmark of ``$evaluate-eligibility`` through the gateway (run by ``make bench``; never fails).

Starts the stack on free ports (``infra.stack``, AUTH_MODE=off, embedded store), then with
the same client settings measures, in one run:

- ``POST /fhir/$evaluate-eligibility`` with the realistic synthetic Bundle of
  ``infra.demo_patients.realistic_patient`` (about 60 resources; evaluation,
  write-back of 13 Observations, DiagnosticReport and Provenance);
- ``GET /fhir/CodeSystem/therapy``, the trivial endpoint (static, answered by the gateway alone,
  through the same authentication and rate-limit layers);
- the eligibility service directly (one gunicorn worker, no gateway, no write-back) and the
  operation in-process (no HTTP), to show where the time goes.

It prints requests/s and p50/p99 latency of each and their ratios.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.demo_patients import EVALUATION_DATE, realistic_patient
from netliver import sessions

REQUESTS = 200
CONCURRENCY = 4


def measure(call: Callable[[requests.Session], None], total: int = REQUESTS,
            concurrency: int = CONCURRENCY) -> tuple[float, float, float]:
    """(requests per second, p50 ms, p99 ms) of ``total`` calls spread over threads."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = total // concurrency

    def worker() -> None:
        session = sessions.session()
        call(session)  # warm the connection
        local = []
        for _ in range(per_thread):
            start = time.perf_counter()
            call(session)
            local.append((time.perf_counter() - start) * 1000)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * len(latencies)) - 1)]
    return len(latencies) / elapsed, statistics.median(latencies), p99


def main() -> int:
    from infra.stack import StackConfig, running
    from services.eligibility.operation import evaluate_eligibility

    bundle = realistic_patient()
    body = json.dumps(bundle)
    print(f"eligibility benchmark: Bundle of {len(bundle['entry'])} resources, "
          f"{REQUESTS} requests, {CONCURRENCY} client threads")
    start = time.perf_counter()
    for _ in range(50):
        evaluate_eligibility(bundle, EVALUATION_DATE)
    in_process_ms = (time.perf_counter() - start) / 50 * 1000
    print(f"in-process operation (validation + evaluation + mapping): {in_process_ms:.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig.ephemeral(Path(tmp), env={"AUTH_MODE": "off", "LOG_LEVEL": "WARNING",
                                                       "RATE_LIMIT_PER_MINUTE": "0"})
        with running(config) as stack:
            base = stack.gateway_url
            url = f"{base}/fhir/$evaluate-eligibility?date={EVALUATION_DATE.isoformat()}"
            headers = {"Content-Type": "application/fhir+json"}

            def operation(session: requests.Session) -> None:
                resp = session.post(url, data=body, headers=headers, timeout=60)
                resp.raise_for_status()

            def trivial(session: requests.Session) -> None:
                session.get(f"{base}/fhir/CodeSystem/therapy", timeout=60).raise_for_status()

            service_url = (f"http://127.0.0.1:{config.eligibility_port}/operations/evaluate-eligibility"
                           f"?date={EVALUATION_DATE.isoformat()}")

            def direct(session: requests.Session) -> None:
                session.post(service_url, data=body, headers=headers, timeout=60).raise_for_status()

            op = measure(operation)
            triv = measure(trivial)
            svc = measure(direct)
    print(f"{'endpoint':<34}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'POST /fhir/$evaluate-eligibility':<34}{op[0]:>10.1f}{op[1]:>10.1f}{op[2]:>10.1f}")
    print(f"{'GET /fhir/CodeSystem/therapy (trivial)':<34}{triv[0]:>10.1f}{triv[1]:>10.1f}{triv[2]:>10.1f}")
    print(f"{'service directly (no gateway/write)':<34}{svc[0]:>10.1f}{svc[1]:>10.1f}{svc[2]:>10.1f}")
    print(f"ratio trivial/operation: throughput {triv[0] / op[0]:.1f}x, p99 {op[2] / triv[2]:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
