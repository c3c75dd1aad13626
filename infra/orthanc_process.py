"""A real Orthanc PACS on loopback, for ``make serve``, ``make demo``, the benchmark and the tests.

Orthanc comes from the Debian packages ``orthanc`` and ``orthanc-dicomweb``
(``apt-get install -y orthanc orthanc-dicomweb``). :class:`OrthancProcess` writes a
configuration into a work directory (storage there, free HTTP and DICOM ports, the DICOMweb
plugin loaded, no authentication, remote access refused, optional Lua scripts), starts the
``Orthanc`` binary, waits until ``GET /system`` answers and stops it with SIGTERM.

The class can also be run from the command line::

    python -m infra.orthanc_process --port 8042 [--dicom-port 4242] [--workdir var/orthanc] \
        [--lua infra/orthanc/netliver.lua]

which runs in the foreground until SIGTERM / Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.stop_signal import stop_on_signals

__all__ = [
    "DICOMWEB_PLUGIN_CANDIDATES",
    "OrthancError",
    "OrthancProcess",
    "find_dicomweb_plugin",
    "find_orthanc_binary",
    "free_port",
    "orthanc_available",
]

# Where the Debian package `orthanc-dicomweb` puts the plugin (`dpkg -L orthanc-dicomweb`).
DICOMWEB_PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)


class OrthancError(RuntimeError):
    """Orthanc is not installed, did not start, or died."""


def find_orthanc_binary() -> str | None:
    """Path of the ``Orthanc`` executable (``/usr/sbin`` is not always on ``PATH``)."""
    found = shutil.which("Orthanc")
    if found:
        return found
    for candidate in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc", "/usr/local/bin/Orthanc"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def find_dicomweb_plugin() -> str | None:
    """Path of the DICOMweb plugin shared library, or None."""
    for candidate in DICOMWEB_PLUGIN_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    plugin_dir = Path("/usr/lib/orthanc")
    if plugin_dir.is_dir():
        for path in sorted(plugin_dir.glob("libOrthancDicomWeb.so*")):
            return str(path)
    return None


def orthanc_available() -> bool:
    """True when both the Orthanc binary and the DICOMweb plugin are installed."""
    return find_orthanc_binary() is not None and find_dicomweb_plugin() is not None


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OrthancProcess:
    """One Orthanc server on loopback with its storage under ``workdir``.

    Parameters
    ----------
    workdir:
        Folder for the configuration, the storage and the log (created if missing).
    lua_scripts:
        Paths of Lua scripts Orthanc loads at start (``LuaScripts``).
    extra_config:
        Keys merged over the generated configuration (e.g. ``{"StableAge": 1}``).
    http_port, dicom_port:
        Fixed ports; free ones are chosen when None.
    env:
        Extra environment variables for the Orthanc process (read by Lua ``os.getenv``).
    """

    def __init__(self, workdir: str | os.PathLike[str], lua_scripts: Sequence[str | os.PathLike[str]] = (),
                 extra_config: Mapping[str, Any] | None = None, *, http_port: int | None = None,
                 dicom_port: int | None = None, env: Mapping[str, str] | None = None,
                 start_timeout_s: float = 30.0) -> None:
        self.workdir = Path(workdir)
        self.lua_scripts = [str(Path(p).resolve()) for p in lua_scripts]
        self.extra_config = dict(extra_config or {})
        self._fixed_http_port = http_port
        self._fixed_dicom_port = dicom_port
        self.http_port = http_port or 0
        self.dicom_port = dicom_port or 0
        self.env = dict(env or {})
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._terminated = False
        self._log_file: Any = None

    # -- addresses ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """REST API root, e.g. ``http://127.0.0.1:8042``."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb root (QIDO-RS / WADO-RS / STOW-RS), e.g. ``http://127.0.0.1:8042/dicom-web``."""
        return f"{self.url}/dicom-web"

    @property
    def log_path(self) -> Path:
        return self.workdir / "orthanc.log"

    @property
    def pid(self) -> int | None:
        """The process id of the Orthanc this object started (None before start or after it exited)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def config_path(self) -> Path:
        return self.workdir / "orthanc.json"

    def config(self) -> dict[str, Any]:
        """The configuration written to ``orthanc.json``."""
        plugin = find_dicomweb_plugin()
        if plugin is None:
            raise OrthancError("the Orthanc DICOMweb plugin is not installed "
                               "(apt-get install -y orthanc-dicomweb)")
        storage = self.workdir / "storage"
        cfg: dict[str, Any] = {
            "Name": "netliver-test-orthanc",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "HttpDescribeErrors": True,
            "DicomServerEnabled": True,
            "DicomAet": "NETLIVER",
            "DicomPort": self.dicom_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "Plugins": [plugin],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "Ssl": False,
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
            "LuaScripts": list(self.lua_scripts),
            "StableAge": 2,
            "OverwriteInstances": True,
            "HttpTimeout": 10,
            "ConcurrentJobs": 2,
            "SaveJobs": False,
        }
        cfg.update(self.extra_config)
        return cfg

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> OrthancProcess:
        """Start Orthanc and wait until ``/system`` answers (retries once on a port race)."""
        if self._proc is not None:
            return self
        binary = find_orthanc_binary()
        if binary is None:
            raise OrthancError("Orthanc is not installed (apt-get install -y orthanc orthanc-dicomweb)")
        last_error: Exception | None = None
        for _attempt in range(3):
            self.http_port = self._fixed_http_port or free_port()
            self.dicom_port = self._fixed_dicom_port or free_port()
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(json.dumps(self.config(), indent=2))
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            env = {**os.environ, **self.env}
            self._proc = subprocess.Popen(
                [binary, str(self.config_path)],
                stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
                cwd=str(self.workdir), start_new_session=True)
            try:
                self._wait_ready()
                return self
            except OrthancError as exc:
                last_error = exc
                self.stop()
                if self._fixed_http_port is not None:
                    break
        raise OrthancError(f"Orthanc did not start: {last_error}; log:\n{self.log_tail()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise OrthancError(f"Orthanc exited with status {self._proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/system", timeout=1.0) as resp:
                    if resp.status == 200:
                        json.loads(resp.read())
                        return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.1)
        raise OrthancError(f"/system did not answer within {self.start_timeout_s} s")

    def terminate(self) -> None:
        """SIGTERM without waiting (Orthanc takes a few seconds to exit): :meth:`stop` then
        waits for it, so a caller can stop other processes meanwhile."""
        if self._proc is not None and self._proc.poll() is None and not self._terminated:
            self._proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (unless :meth:`terminate` sent it), wait, SIGKILL as a last resort. Safe to
        call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            if not self._terminated:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._terminated = False
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""

    def __enter__(self) -> OrthancProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- small REST helpers -------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json", timeout_s: float = 30.0) -> Any:
        """Call the REST API; returns parsed JSON (or raw bytes when not JSON)."""
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers={"Content-Type": content_type} if body is not None else {})
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            data = resp.read()
        try:
            return json.loads(data)
        except ValueError:
            return data

    def upload(self, dicom_bytes: bytes) -> dict[str, Any]:
        """``POST /instances`` one DICOM Part-10 file; returns Orthanc's answer (ID, ParentStudy…)."""
        answer = self.request("POST", "/instances", dicom_bytes, "application/dicom")
        if not isinstance(answer, dict):
            raise OrthancError(f"unexpected answer to POST /instances: {answer!r}")
        return answer


def main(argv: Sequence[str] | None = None) -> int:
    """Run Orthanc in the foreground until SIGTERM / SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m infra.orthanc_process", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8042, help="HTTP port (0 = a free one)")
    parser.add_argument("--dicom-port", type=int, default=0, help="DICOM port (0 = a free one)")
    parser.add_argument("--workdir", default="", help="storage folder (default: a temporary one)")
    parser.add_argument("--lua", action="append", default=[], help="Lua script to load (repeatable)")
    parser.add_argument("--stable-age", type=int, default=None, help="StableAge in seconds")
    args = parser.parse_args(argv)
    cleanup = not args.workdir
    workdir = args.workdir or tempfile.mkdtemp(prefix="netliver-orthanc-")
    extra: dict[str, Any] = {}
    if args.stable_age is not None:
        extra["StableAge"] = args.stable_age
    proc = OrthancProcess(workdir, args.lua, extra, http_port=args.port or None,
                          dicom_port=args.dicom_port or None)
    stop = stop_on_signals()
    try:
        proc.start()
        print(f"Orthanc ready: REST {proc.url}  DICOMweb {proc.dicomweb_url}  "
              f"DICOM port {proc.dicom_port}  storage {workdir}", flush=True)
        while not stop.requested and proc.running:
            time.sleep(0.2)
        return 0 if stop.requested else 1
    finally:
        proc.stop()
        if cleanup:
            with contextlib.suppress(OSError):
                shutil.rmtree(workdir)


if __name__ == "__main__":
    sys.exit(main())
