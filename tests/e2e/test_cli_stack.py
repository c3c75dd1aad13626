"""``netliver serve`` and ``netliver demo``: the command starts the stack on the ports it is given,
the stack answers, and Ctrl-C (SIGINT to the command's process group, as a terminal sends it) or a
SIGINT to the command alone (a supervisor's ``kill -INT``) stops every process the command
started and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.stack import ROOT, free_port
from tests.e2e.test_serve import _alive, _children


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    # a session of its own: the test's SIGINT to the group plays the terminal's Ctrl-C
    return subprocess.Popen([sys.executable, "-m", "netliver.cli", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_up(proc: subprocess.Popen[str], url: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            pytest.fail(f"the command ended ({proc.returncode}) before {url} answered:\n{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer in {timeout_s} s")


def _stop(proc: subprocess.Popen[str], whole_group: bool) -> tuple[int, str]:
    if whole_group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    return proc.returncode, out


def _base_env(tmp_path: Path, gateway: int) -> dict[str, str]:
    env = {**os.environ, "GATEWAY_PORT": str(gateway), "NETLIVER_DATA_DIR": str(tmp_path),
           "ELIGIBILITY_URL": f"http://127.0.0.1:{free_port()}", "RESPONSE_URL": f"http://127.0.0.1:{free_port()}",
           "DOSIMETRY_URL": f"http://127.0.0.1:{free_port()}", "ORTHANC_URL": "http://127.0.0.1:1",
           "JOB_QUEUE": f"cli-test-{gateway}", "ORTHANC_CATCHUP_S": "0", "PYTHONPATH": str(ROOT)}
    env.pop("AUTH_MODE", None)
    return env


@pytest.mark.parametrize("whole_group", [True, False], ids=["ctrl-c", "sigint-to-the-command"])
def test_serve_answers_health_and_stops_what_it_started(tmp_path: Path, whole_group: bool) -> None:
    gateway = free_port()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])  # not the command's
    proc = _cli("serve", env=_base_env(tmp_path, gateway))
    try:
        _wait_up(proc, f"http://127.0.0.1:{gateway}/health")
        health = requests.get(f"http://127.0.0.1:{gateway}/health", timeout=10).json()
        assert health["status"] == "pass" and health["authMode"] == "off"
        assert {"eligibility", "response", "dosimetry"} <= {k for k, v in health["checks"].items() if v["status"] == "pass"}
        started = _children(proc.pid)
        assert len(started) >= 6  # the stack launcher, four gunicorn masters (+ workers), a Celery worker
        code, out = _stop(proc, whole_group)
        assert code == 0, out
        assert "netliver stopped" in out
        time.sleep(0.5)
        assert [pid for pid in started if _alive(pid)] == [], out
        assert bystander.poll() is None  # only what the command started
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{gateway}/health", timeout=2)
    finally:
        for pid in _children(proc.pid) if proc.poll() is None else ():
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        bystander.kill()
        bystander.wait()


def _without_orthanc(env: dict[str, Any]) -> dict[str, str]:
    """PATH without Debian's Orthanc: the demo then skips the PACS and the voxel jobs (minutes), the
    part ``tests/e2e/test_for_people.py`` already runs on the same ``run`` function."""
    path = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not (Path(p) / "Orthanc").exists())
    return {**env, "PATH": path}


def test_demo_keep_prints_the_page_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    gateway = free_port()
    env = _without_orthanc(_base_env(tmp_path, gateway))
    proc = _cli("demo", "--keep", env=env)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 300
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the demo ended ({proc.wait()}) before it printed the page:\n{''.join(lines)}")
            lines.append(line)
            if "/app/patient/" in line:
                break
        url = lines[-1].strip()
        assert url == f"http://127.0.0.1:{gateway}/app/patient/demo-nen-1", "".join(lines)
        text = "".join(lines)
        assert "Demo finished" in text and "Voxel dosimetry skipped" in text
        page = requests.get(url, timeout=60)
        assert page.status_code == 200 and "table" in page.text
        figures = sorted(p.name for p in (ROOT / "var" / "demo" / "figures").glob("*.png"))
        assert {"waterfall.png", "spider.png", "markers.png"} <= set(figures)
        started = _children(proc.pid)
        assert len(started) >= 5
        code, out = _stop(proc, whole_group=True)
        assert code == 0, out
        assert "Stack stopped" in out
        time.sleep(0.5)
        assert [pid for pid in started if _alive(pid)] == []
    finally:
        if proc.poll() is None:
            for pid in _children(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()


def test_demo_without_keep_stops_everything_after_the_summary(tmp_path: Path) -> None:
    gateway = free_port()
    proc = _cli("demo", env=_without_orthanc(_base_env(tmp_path, gateway)))
    seen: set[int] = set()
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= _children(proc.pid)
        time.sleep(0.5)
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "RECIST 1.1" in out and "Demo finished" in out and "Stack stopped" in out
    assert len(seen) >= 5 and [pid for pid in seen if _alive(pid)] == []
