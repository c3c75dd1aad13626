"""A neighbour's Orthanc and a netliver command, together in a private PID namespace.

The tests that check netliver never stops a process it did not start must not do harm when the
defect comes back: the Debian service script stops by executable, so it signals every Orthanc
process it can see. In a
PID namespace of its own, with its own ``/proc`` and a private ``/run`` (where that script
removes its pid file), a command sees only the processes started there: a regression stops the
test's Orthanc and no one else's.

:class:`Neighbourhood` (test side) runs ``unshare`` with this module as the namespace's first
process, which

1. starts an Orthanc on the given ports (the neighbour's PACS) and prints ``ready``;
2. starts the command in a session of its own (output to a log file) and prints ``started``;
3. on a ``stop`` line from stdin sends SIGTERM to the command's process group (as a terminal's
   Ctrl-C reaches every process of the foreground group); prints ``exit <code>`` when the
   command has ended;
4. when stdin closes, stops what is still running and leaves; the kernel then ends whatever
   is left in the namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from infra.orthanc_process import OrthancProcess, orthanc_available
from infra.stack import ROOT

__all__ = ["Neighbourhood", "namespaces_available", "neighbourhood_skip_reason"]

_RUN_PRIVATE = 'mount -t tmpfs netliver-test-run /run && exec "$0" "$@"'


def _unshare_argv() -> list[str]:
    return ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--", "sh", "-c", _RUN_PRIVATE]


def namespaces_available() -> bool:
    """True when this user may make a PID namespace with its own /proc and /run."""
    if shutil.which("unshare") is None:
        return False
    result = subprocess.run([*_unshare_argv(), "true"], capture_output=True, timeout=30, check=False)
    return result.returncode == 0


class Neighbourhood:
    """Test side: the namespace process, its Orthanc's address and the command's log."""

    def __init__(self, workdir: Path, argv: Sequence[str], env: Mapping[str, str],
                 http_port: int, dicom_port: int) -> None:
        self.workdir = workdir
        self.log_path = workdir / "command.log"
        self.orthanc_url = f"http://127.0.0.1:{http_port}"
        spec = {"argv": list(argv), "env": dict(env), "log": str(self.log_path),
                "http_port": http_port, "dicom_port": dicom_port, "workdir": str(workdir / "neighbour")}
        clean_env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
        self._proc = subprocess.Popen(
            [*_unshare_argv(), sys.executable, "-m", "tests.support.pid_namespace", json.dumps(spec)],
            cwd=ROOT, env={**clean_env, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._expect("ready", 60)
        self._expect("started", 10)

    def _expect(self, word: str, timeout_s: float) -> str:
        """The next line of the namespace process that starts with ``word``."""
        seen: list[str] = []
        found: list[str] = []

        def read() -> None:
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                if line.startswith(word):
                    found.append(line.strip())
                    return
                seen.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not found:
            raise AssertionError(f"no {word!r} line from the namespace in {timeout_s} s; it said:\n"
                                 f"{''.join(seen)[-3000:]}\ncommand log:\n{self.log()[-3000:]}")
        return found[0]

    def orthanc_answers(self) -> bool:
        """Whether the neighbour's Orthanc answers ``GET /system``."""
        try:
            return requests.get(f"{self.orthanc_url}/system", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def wait_exit(self, timeout_s: float) -> int:
        """Exit status of the command (a negative number for a signal)."""
        line = self._expect("exit", timeout_s)
        try:
            return int(line.split()[1])
        except (IndexError, ValueError):
            raise AssertionError(f"{line}; command log:\n{self.log()}") from None

    def stop_command(self, timeout_s: float = 60.0) -> int:
        """SIGTERM to the command's process group; its exit status."""
        assert self._proc.stdin is not None
        self._proc.stdin.write("stop\n")
        self._proc.stdin.flush()
        return self.wait_exit(timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()  # unshare --kill-child ends the namespace with it
            self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Neighbourhood:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _say(text: str) -> None:
    print(text, flush=True)


def _run(spec: dict[str, Any]) -> int:
    orthanc = OrthancProcess(spec["workdir"], http_port=spec["http_port"], dicom_port=spec["dicom_port"])
    orthanc.start()
    _say(f"ready {orthanc.url}")
    with open(spec["log"], "ab") as log:
        cmd = subprocess.Popen(spec["argv"], cwd=ROOT, env={**os.environ, **spec["env"]}, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    _say(f"started {cmd.pid}")
    threading.Thread(target=lambda: _say(f"exit {cmd.wait()}"), daemon=True).start()
    for line in sys.stdin:
        if line.strip() == "stop" and cmd.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(cmd.pid, signal.SIGTERM)
    if cmd.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cmd.pid, signal.SIGKILL)
        cmd.wait(timeout=30)
    time.sleep(0.2)  # let the exit line out
    orthanc.stop()
    return 0


def neighbourhood_skip_reason() -> str | None:
    """Why these tests cannot run here, or None."""
    if not orthanc_available():
        return "Orthanc and orthanc-dicomweb are not installed"
    if not namespaces_available():
        return "no private PID namespace here (unshare needs CAP_SYS_ADMIN)"
    return None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.support.pid_namespace")
    parser.add_argument("spec", help="JSON: argv, env, log, http_port, dicom_port, workdir")
    sys.exit(_run(json.loads(parser.parse_args().spec)))
