"""netliver never stops an Orthanc it did not start.

A developer's PACS, another stack's test PACS or the hospital's runs from the same binary
(``/usr/sbin/Orthanc``) as netliver's own. Each test starts such a neighbour on free ports,
runs a netliver entry point beside it, and checks that the neighbour still answers. Both run in
a private PID namespace (tests/support/pid_namespace.py), so that a regression stops only the
test's Orthanc.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from infra.stack import free_port
from tests.support.pid_namespace import Neighbourhood, neighbourhood_skip_reason


@pytest.fixture(scope="module", autouse=True)
def _needs_namespace() -> None:
    reason = neighbourhood_skip_reason()
    if reason:
        pytest.skip(reason)


def test_install_script_leaves_a_running_orthanc_alone(tmp_path: Path) -> None:
    with Neighbourhood(tmp_path, ["bash", "infra/install-system-deps.sh"], {}, free_port(), free_port()) as hood:
        assert hood.wait_exit(120) == 0, hood.log()
        assert hood.orthanc_answers(), f"the neighbour's Orthanc was stopped; install log:\n{hood.log()}"


def _gateway_up(url: str, hood: Neighbourhood, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/fhir/metadata", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if any(end in hood.log() for end in ("netliver stopped", "Traceback", "make: ***")):
            break
        time.sleep(0.5)
    raise AssertionError(f"make serve did not bring the gateway up; log:\n{hood.log()[-4000:]}")


def test_make_serve_moves_off_a_taken_orthanc_port_and_leaves_that_orthanc_running(tmp_path: Path) -> None:
    """The neighbour holds the very ports ``make serve`` is configured to give its Orthanc (as
    the Debian orthanc service holds 8042): serve says so, runs its own Orthanc elsewhere, and
    the neighbour answers while serve runs and after it stops."""
    http_port, dicom_port, gateway = free_port(), free_port(), free_port()
    env = {"GATEWAY_PORT": str(gateway), "NETLIVER_DATA_DIR": str(tmp_path / "var"),
           "ELIGIBILITY_URL": f"http://127.0.0.1:{free_port()}", "RESPONSE_URL": f"http://127.0.0.1:{free_port()}",
           "DOSIMETRY_URL": f"http://127.0.0.1:{free_port()}", "ORTHANC_PORT": str(http_port),
           "ORTHANC_DICOM_PORT": str(dicom_port), "ORTHANC_URL": "", "DICOMWEB_URL": "",
           "JOB_QUEUE": f"neighbour-test-{gateway}", "ORTHANC_CATCHUP_S": "0", "AUTH_MODE": "off"}
    # make -o: the Python packages are installed (make test did it); serve still runs system-deps.
    argv = ["make", "--no-print-directory", "-o", ".venv/.installed", "serve"]
    with Neighbourhood(tmp_path, argv, env, http_port, dicom_port) as hood:
        url = f"http://127.0.0.1:{gateway}"
        _gateway_up(url, hood, 120)
        assert hood.orthanc_answers(), f"the neighbour's Orthanc was stopped; log:\n{hood.log()}"
        log = hood.log()
        assert f"port {http_port} (ORTHANC_PORT) is in use by another process" in log
        assert f"port {dicom_port} (ORTHANC_DICOM_PORT) is in use by another process" in log
        moved = re.search(r"starts Orthanc's HTTP API on port (\d+)", log)
        assert moved is not None, log
        pacs = requests.get(f"{url}/health", timeout=10).json()["checks"]["pacs"]
        assert pacs["status"] == "pass" and pacs["url"] == f"http://127.0.0.1:{moved.group(1)}", pacs
        hood.stop_command(90)
        assert "netliver stopped" in hood.log()
        assert hood.orthanc_answers(), f"the neighbour's Orthanc was stopped; log:\n{hood.log()}"
        with pytest.raises(requests.ConnectionError):  # serve's own Orthanc stopped with it
            requests.get(f"http://127.0.0.1:{moved.group(1)}/system", timeout=5)
