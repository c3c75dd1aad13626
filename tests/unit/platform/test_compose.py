"""docker-compose.yml against the Compose Specification JSON schema (no Docker engine here).

The schema is the ``compose_spec.json`` published inside the ``docker-compose`` 1.29.2 wheel on
PyPI; it is downloaded once into ``var/cache`` (pip, no dependencies).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CACHE = ROOT / "var" / "cache"
WHEEL_GLOB = "docker_compose-1.29.2-*.whl"


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob(WHEEL_GLOB))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "docker-compose==1.29.2", "-d", str(CACHE)], check=True, timeout=300)
        wheels = sorted(CACHE.glob(WHEEL_GLOB))
    with zipfile.ZipFile(wheels[0]) as wheel:
        schema: dict[str, Any] = json.loads(wheel.read("compose/config/compose_spec.json"))
    return schema


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _errors(schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_matches_the_compose_specification(compose_schema: dict[str, Any], compose: dict[str, Any]) -> None:
    assert _errors(compose_schema, compose) == []


def test_the_schema_rejects_a_broken_compose_file(compose_schema: dict[str, Any], compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["gateway"]["healthcheck"]["retries"] = "many"
    broken["services"]["worker"]["deploy"]["replicas"] = -1
    assert len(_errors(compose_schema, broken)) >= 1


def test_the_stack_has_every_process_with_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "postgres", "orthanc", "gateway", "eligibility", "response", "dosimetry", "worker"} <= set(services)
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no health check"
    assert services["worker"]["deploy"]["replicas"] >= 2
    gateway_env = services["gateway"]["environment"]
    for var in ("REDIS_URL", "DATABASE_URL", "FHIR_UPSTREAM_URL", "DICOMWEB_URL", "ORTHANC_URL", "AUTH_MODE"):
        assert var in gateway_env
    assert services["gateway"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_uses_only_files_that_exist(compose: dict[str, Any]) -> None:
    for svc in compose["services"].values():
        build = svc.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).exists()
        for vol in svc.get("volumes", []):
            src = str(vol).split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), src
