"""``make serve``: the whole stack in the foreground, and every child stopped on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from infra.stack import ROOT, free_port


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_starts_everything_and_stops_every_child(tmp_path: Path, sig: int) -> None:
    gateway = free_port()
    env = {**os.environ, "GATEWAY_PORT": str(gateway), "NETLIVER_DATA_DIR": str(tmp_path),
           "ELIGIBILITY_URL": f"http://127.0.0.1:{free_port()}", "RESPONSE_URL": f"http://127.0.0.1:{free_port()}",
           "DOSIMETRY_URL": f"http://127.0.0.1:{free_port()}", "ORTHANC_URL": "http://127.0.0.1:1",
           "JOB_QUEUE": f"serve-test-{gateway}", "ORTHANC_CATCHUP_S": "0", "PYTHONPATH": str(ROOT)}
    env.pop("AUTH_MODE", None)
    proc = subprocess.Popen([sys.executable, "-m", "infra.stack", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{gateway}/fhir/metadata", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.3)
        health = requests.get(f"http://127.0.0.1:{gateway}/health", timeout=10).json()
        assert health["authMode"] == "off"
        assert {"eligibility", "response", "dosimetry"} <= {k for k, v in health["checks"].items() if v["status"] == "pass"}
        children = _children(proc.pid)
        assert len(children) >= 5  # four gunicorn masters (+ their workers) and a Celery worker
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        text = out.decode()
        assert "AUTH_MODE=off" in text and "netliver stopped" in text
        time.sleep(0.5)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
