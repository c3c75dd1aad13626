"""Benchmark of a CDS Hooks ``patient-view`` call as an EHR makes it (run by ``make bench``;
never fails on timing).

The gateway (AUTH_MODE=jwt, CDS client JWTs, jti in Redis) and the eligibility service are served
over HTTP on loopback; the EHR's FHIR server is Medplum's engine (``tests/support/fhir_engine``)
when Node.js is installed, else a second netliver gateway. For the ~60-resource record of
``realistic_patient`` it times, interleaved so that all see the same machine load:

- **full prefetch**: every key prefetched by the client;
- **fetch on miss**: nothing prefetched, the gateway reads the eight keys from ``fhirServer``;
- **baseline**: the eligibility service's own ``cds-cards`` on the same record (no gateway, no
  authentication, no FHIR reads): what the CDS layer adds is the ratio to it.

Prints p50 and p99 in milliseconds and the ratios of the p50s.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import create_app
from netliver.settings import Settings
from services.eligibility.app import create_app as create_eligibility_app
from tests.fixtures.eligibility_patients import realistic_patient
from tests.support.cds_client import CdsClientSim, gateway_env
from tests.support.fhir_engine import start_engine
from tests.support.jwks import JwksServer
from tests.support.served import ServedApp

PATIENT = "bench-cds-1"
RUNS = 100


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def _ehr_server(tmp: Path) -> Iterator[tuple[str, str]]:
    """(FHIR base, name) of the EHR's server, loaded with the record."""
    record = realistic_patient(PATIENT)
    with ExitStack() as stack:
        if shutil.which("node"):
            engine = start_engine(tmp / "engine")
            stack.callback(engine.stop)
            base, name = engine.base_url, "Medplum fhir-router"
        else:
            app = create_app(Settings.from_env({"AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{tmp / 'ehr.db'}",
                                                "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0",
                                                "ORTHANC_CATCHUP_S": "0", "LOG_LEVEL": "WARNING"}))
            served = stack.enter_context(ServedApp(app))
            base, name = f"{served.url}/fhir", "second netliver gateway"
        for entry in record["entry"]:
            res = entry["resource"]
            requests.put(f"{base}/{res['resourceType']}/{res['id']}", json=res, timeout=30,
                         headers={"Content-Type": "application/fhir+json"}).raise_for_status()
        yield base, name


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_dir, ExitStack() as stack:
        tmp = Path(tmp_dir)
        ehr = stack.enter_context(CdsClientSim())
        idp = stack.enter_context(JwksServer())
        eligibility = stack.enter_context(ServedApp(create_eligibility_app(Settings(log_level="WARNING"))))
        base, name = stack.enter_context(_ehr_server(tmp))
        gateway = stack.enter_context(ServedApp(create_app(Settings.from_env(
            gateway_env(tmp, idp, ehr, eligibility.url, "https://netliver.bench")))))
        url = f"{gateway.url}/cds-services/liver-directed-therapy"
        aud = "https://netliver.bench/cds-services/liver-directed-therapy"
        templates = requests.get(f"{gateway.url}/cds-services", timeout=30).json()["services"][0]["prefetch"]
        prefetch = ehr.prefetch(templates, base, PATIENT)
        bundle = {"resourceType": "Bundle", "type": "searchset",
                  "entry": [{"resource": r} for r in (e["resource"] for e in realistic_patient(PATIENT)["entry"])]}
        session = requests.Session()

        def call(body: dict[str, object]) -> Callable[[], float]:
            def run() -> float:
                token = ehr.token(aud)
                start = time.perf_counter()
                resp = session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)
                elapsed = time.perf_counter() - start
                assert resp.status_code == 200, resp.text[:300]
                return elapsed
            return run

        def baseline() -> float:
            start = time.perf_counter()
            resp = session.post(f"{eligibility.url}/operations/cds-cards", json=bundle, timeout=60,
                                headers={"Content-Type": "application/fhir+json"})
            elapsed = time.perf_counter() - start
            assert resp.status_code == 200, resp.text[:300]
            return elapsed

        modes: dict[str, Callable[[], float]] = {
            "baseline (eligibility cds-cards)": baseline,
            "full prefetch": call(ehr.hook_request(PATIENT, prefetch=prefetch)),
            "fetch on miss": call(ehr.hook_request(PATIENT, fhir_server=base, access_token="bench")),
        }
        samples: dict[str, list[float]] = {m: [] for m in modes}
        for fn in modes.values():  # warm-up
            fn()
        for _ in range(RUNS):
            for mode, fn in modes.items():
                samples[mode].append(fn() * 1000)
        print(f"EHR FHIR server: {name}; {RUNS} calls per mode, interleaved")
        base_p50 = statistics.median(samples["baseline (eligibility cds-cards)"])
        for mode, values in samples.items():
            p50, p99 = statistics.median(values), _percentile(values, 0.99)
            print(f"  {mode:34s} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   p50 ratio {p50 / base_p50:5.2f}")


if __name__ == "__main__":
    main()
