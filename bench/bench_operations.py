"""The synchronous operations through the gateway against the cost of storing their results
(run by ``make bench``; never fails on a timing).

For ``$evaluate-eligibility`` (the realistic 60-resource record), ``$tumor-response`` (baseline
and three follow-ups) and ``$sirt-activity`` (partition model), with 4 client threads and in
one run:

- **operation**: ``POST /fhir/$op`` through the gateway (service call, write-back transaction);
- **floor**: ``POST /fhir`` through the gateway, a FHIR transaction of ``PUT``s of the very
  resources that operation writes (the service's ``write`` list, tagged as the gateway tags it),
  with the timestamps the operation renews on every call renewed on every floor request too;
- **service**: the service's internal operation alone (no gateway, no write-back).

It prints requests/s and p50/p99 of each and the ratio operation/floor (goal ≤ 1.5).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_clinical import _rss_bytes
from bench.bench_eligibility import measure

REQUESTS = 200
CONCURRENCY = 4
#: Top-level elements that hold the moment a result was made (renewed by each call).
_INSTANTS = ("recorded", "issued", "effectiveDateTime", "date")


def _sirt_parameters() -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "method", "valueCode": "partition"}, {"name": "device", "valueCode": "resin"},
        {"name": "liverVolumeMl", "valueDecimal": 1800}, {"name": "tumorVolumeMl", "valueDecimal": 300},
        {"name": "lungShuntFraction", "valueDecimal": 0.07}, {"name": "tumorToNormalRatio", "valueDecimal": 4},
        {"name": "targetDoseGy", "valueDecimal": 120}, {"name": "normalLiverLimitGy", "valueDecimal": 40},
        {"name": "patient", "valueReference": {"reference": "Patient/bench-sirt"}}]}


def _cases() -> list[tuple[str, str, str, dict[str, Any], dict[str, str]]]:
    """(operation, service, internal operation, body, query)."""
    from infra.demo_follow_up import synthetic_follow_up_bundle
    from infra.demo_patients import EVALUATION_DATE, realistic_patient

    return [("$evaluate-eligibility", "eligibility", "evaluate-eligibility", realistic_patient(),
             {"date": EVALUATION_DATE.isoformat()}),
            ("$tumor-response", "response", "tumor-response", synthetic_follow_up_bundle(), {}),
            ("$sirt-activity", "dosimetry", "sirt-activity", _sirt_parameters(), {})]


def _renewed(write: list[dict[str, Any]], other: list[dict[str, Any]]) -> set[str]:
    """The instant elements whose value differs between two calls' results."""
    return {key for a, b in zip(write, other, strict=False) for key in _INSTANTS
            if key in a and a.get(key) != b.get(key)}


def _floor_call(url: str, write: list[dict[str, Any]], renewed: set[str]) -> Callable[[requests.Session], None]:
    from gateway.writeback import tag_results, transaction_bundle

    def call(session: requests.Session) -> None:
        resources = copy.deepcopy(write)
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for res in resources:
            for key in renewed & res.keys():
                res[key] = now
        bundle = transaction_bundle(tag_results(resources))
        resp = session.post(url, data=json.dumps(bundle), headers={"Content-Type": "application/fhir+json"},
                            timeout=60)
        resp.raise_for_status()

    return call


def _process_rss(pid: int) -> float:
    """MiB resident in a process and its children (a gunicorn master and its workers)."""
    total = _rss_bytes(pid)
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
            total += sum(_rss_bytes(int(child)) for child in fh.read().split())
    return total / 2**20


def main() -> int:
    from infra.stack import StackConfig, running

    print(f"operations vs the transaction storing their results: {REQUESTS} requests, {CONCURRENCY} clients")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig.ephemeral(Path(tmp), env={"AUTH_MODE": "off", "LOG_LEVEL": "WARNING",
                                                       "RATE_LIMIT_PER_MINUTE": "0"})
        with running(config) as stack:
            fhir = f"{stack.gateway_url}/fhir"
            ports = {"eligibility": config.eligibility_port, "response": config.response_port,
                     "dosimetry": config.dosimetry_port}
            headers = {"Content-Type": "application/fhir+json"}
            for name, service, internal, body, query in _cases():
                data = json.dumps(body)
                service_url = f"http://127.0.0.1:{ports[service]}/operations/{internal}"
                first, second = (requests.post(service_url, data=data, params=query, headers=headers,
                                               timeout=60).json() for _ in range(2))
                write = first.get("write", [])
                renewed = _renewed(write, second.get("write", []))

                def operation(session: requests.Session, name: str = name, data: str = data,
                              query: dict[str, str] = query) -> None:
                    session.post(f"{fhir}/{name}", data=data, params=query, headers=headers,
                                 timeout=60).raise_for_status()

                def direct(session: requests.Session, url: str = service_url, data: str = data,
                           query: dict[str, str] = query) -> None:
                    session.post(url, data=data, params=query, headers=headers, timeout=60).raise_for_status()

                floor_call = _floor_call(fhir, write, renewed)
                floor = measure(floor_call, REQUESTS, CONCURRENCY)
                op = measure(operation, REQUESTS, CONCURRENCY)
                floor_again = measure(floor_call, REQUESTS, CONCURRENCY)
                svc = measure(direct, REQUESTS, CONCURRENCY)
                best_floor = max(floor, floor_again)
                rows.append((name, len(json.loads(data).get("entry", json.loads(data).get("parameter", []))),
                             len(write), sorted(renewed), op, best_floor, svc))
            memory = {name: _process_rss(stack.procs[name].pid) for name in ("gateway", *ports)}
    print(f"{'operation':<24}{'input':>6}{'writes':>7}{'op req/s':>10}{'p50':>7}{'p99':>7}"
          f"{'floor req/s':>12}{'p50':>7}{'p99':>7}{'service req/s':>14}{'op/floor':>9}")
    for name, n_in, n_out, _renew, op, floor, svc in rows:
        print(f"{name:<24}{n_in:>6}{n_out:>7}{op[0]:>10.1f}{op[1]:>7.1f}{op[2]:>7.1f}"
              f"{floor[0]:>12.1f}{floor[1]:>7.1f}{floor[2]:>7.1f}{svc[0]:>14.1f}{floor[0] / op[0]:>9.2f}")
    print("resident memory after the run (gunicorn master + 2 workers × 4 threads each): "
          + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in memory.items()))
    print("op/floor: the operation's time per request over the floor's (throughput ratio; goal ≤ 1.5); "
          "instants renewed per floor request: " + "; ".join(f"{r[0]} {', '.join(r[3]) or 'none'}" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
