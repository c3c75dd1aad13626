"""Benchmark of a CDS Hooks ``patient-view`` call as an EHR makes it (run by ``make bench``;
never fails on timing).

In one process, on loopback over HTTP: the gateway (AUTH_MODE=jwt, trusting one CDS client whose
ES384 key is published by a small JWKS app, jti recorded in Redis), the eligibility service, and
as the EHR's FHIR server a second gateway with its own SQLite database holding the ~60-resource
record of ``realistic_patient``. Timed, interleaved so that all see the same machine load:

- **full prefetch**: every discovery key prefetched by the client;
- **fetch on miss**: nothing prefetched, the gateway reads the eight keys from ``fhirServer``;
- **baseline**: the eligibility service's own ``cds-cards`` on the same record (no gateway, no
  authentication, no FHIR reads): what the CDS layer adds is the ratio to it.

Prints p50 and p99 in milliseconds and the ratios of the p50s.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, jsonify
from jwt.algorithms import ECAlgorithm
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import create_app
from infra.demo_patients import realistic_patient
from netliver import sessions
from netliver.settings import Settings
from services.eligibility.app import create_app as create_eligibility_app

PATIENT = "bench-cds-1"
RUNS = 100
EHR_ISSUER = "https://ehr.bench/"
PUBLIC = "https://netliver.bench"
AUD = f"{PUBLIC}/cds-services/liver-directed-therapy"


@contextmanager
def _served(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def _jwks_app(key: ec.EllipticCurvePrivateKey) -> Flask:
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "bench", "use": "sig", "alg": "ES384"})
    app = Flask("ehr-jwks")
    app.add_url_rule("/jwks", "jwks", lambda: jsonify({"keys": [jwk]}))
    return app


def _settings(tmp: Path, name: str, **env: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp / name}.db", "RATE_LIMIT_PER_MINUTE": "0",
                              "JOB_SWEEP_S": "0", "ORTHANC_CATCHUP_S": "0", "LOG_LEVEL": "WARNING", **env})


def _prefetch(templates: dict[str, str], base: str) -> dict[str, Any]:
    """What an EHR sends: each template's answer, null when it found nothing."""
    out: dict[str, Any] = {}
    for key, template in templates.items():
        body = requests.get(f"{base}/{template.replace('{{context.patientId}}', PATIENT)}", timeout=30).json()
        out[key] = body if body.get("resourceType") != "Bundle" or body.get("entry") else None
    return out


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    record = realistic_patient(PATIENT)
    with tempfile.TemporaryDirectory() as tmp_dir, _served(_jwks_app(key)) as jwks, \
            _served(create_eligibility_app(Settings(log_level="WARNING"))) as eligibility, \
            _served(create_app(_settings(Path(tmp_dir), "ehr", AUTH_MODE="off"))) as ehr:
        tmp = Path(tmp_dir)
        base = f"{ehr}/fhir"
        transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": e["resource"], "request": {"method": "PUT", "url": f"{e['resource']['resourceType']}/"
                                                                             f"{e['resource']['id']}"}}
            for e in record["entry"]]}
        requests.post(base, json=transaction, timeout=60).raise_for_status()
        gateway_app = create_app(_settings(
            tmp, "gateway", AUTH_MODE="jwt", AUTH_JWKS_URL=f"{jwks}/jwks", AUTH_ISSUER="https://idp.bench/",
            AUTH_AUDIENCE=f"{PUBLIC}/fhir", INTERNAL_TOKEN="a-long-bench-secret-for-the-workers",
            PUBLIC_BASE_URL=PUBLIC, ELIGIBILITY_URL=eligibility,
            CDS_CLIENTS=json.dumps([{"iss": EHR_ISSUER, "jwks_url": f"{jwks}/jwks"}])))
        with _served(gateway_app) as gateway:
            _run(gateway, eligibility, base, key, record)


def _run(gateway: str, eligibility: str, base: str, key: ec.EllipticCurvePrivateKey,
         record: dict[str, Any]) -> None:
    session = sessions.session()
    templates = session.get(f"{gateway}/cds-services", timeout=30).json()["services"][0]["prefetch"]
    prefetch = _prefetch(templates, base)
    url = f"{gateway}/cds-services/liver-directed-therapy"

    def call(body: dict[str, Any]) -> Callable[[], float]:
        def run() -> float:
            now = int(time.time())
            token = jwt.encode({"iss": EHR_ISSUER, "aud": AUD, "iat": now, "exp": now + 300,
                                "jti": str(uuid.uuid4())}, key, algorithm="ES384", headers={"kid": "bench"})
            start = time.perf_counter()
            resp = session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            elapsed = time.perf_counter() - start
            assert resp.status_code == 200, resp.text[:300]
            return elapsed
        return run

    def baseline() -> float:
        start = time.perf_counter()
        resp = session.post(f"{eligibility}/operations/cds-cards", json={**record, "type": "searchset"},
                            timeout=60, headers={"Content-Type": "application/fhir+json"})
        elapsed = time.perf_counter() - start
        assert resp.status_code == 200, resp.text[:300]
        return elapsed

    hook = {"hook": "patient-view", "context": {"userId": "Practitioner/bench", "patientId": PATIENT}}
    modes: dict[str, Callable[[], float]] = {
        "baseline (eligibility cds-cards)": baseline,
        "full prefetch": call({**hook, "hookInstance": str(uuid.uuid4()), "prefetch": prefetch}),
        "fetch on miss": call({**hook, "hookInstance": str(uuid.uuid4()), "fhirServer": base,
                               "fhirAuthorization": {"access_token": "bench", "token_type": "Bearer",
                                                     "expires_in": 300, "scope": "patient/*.read",
                                                     "subject": "netliver"}}),
    }
    samples: dict[str, list[float]] = {m: [] for m in modes}
    for fn in modes.values():  # warm-up
        fn()
    for _ in range(RUNS):
        for mode, fn in modes.items():
            samples[mode].append(fn() * 1000)
    print(f"EHR FHIR server: a second netliver gateway (SQLite); {RUNS} calls per mode, interleaved")
    base_p50 = statistics.median(samples["baseline (eligibility cds-cards)"])
    for mode, values in samples.items():
        p50, p99 = statistics.median(values), _percentile(values, 0.99)
        print(f"  {mode:34s} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   p50 ratio {p50 / base_p50:5.2f}")


if __name__ == "__main__":
    main()
