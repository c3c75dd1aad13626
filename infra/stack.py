"""Start and stop the whole netliver stack as local processes (no Docker).

Used by ``make serve`` (foreground until Ctrl-C / SIGTERM), ``make demo`` and the integration
and end-to-end tests. It starts what the configuration needs and is missing: a Redis server
when ``REDIS_URL`` does not answer, an Orthanc PACS (Debian packages) when asked, then the three
services and the gateway under gunicorn and the dosimetry worker(s) under Celery. Every child
runs in its own process group and is stopped (TERM, then KILL) when the stack stops.

It never stops, signals or reconfigures a process it did not start: a port that another
process holds (the Debian orthanc service on 8042, someone's Redis or PACS) is left to it.
The internal ports (services, Orthanc) then move to free ones, and the stack says so; a taken
gateway port stops the start with a message naming the variable to change.

    python -m infra.stack serve          # the defaults: gateway on 127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests

from infra.stop_signal import stop_on_signals

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "PortInUse", "Stack", "StackConfig", "free_port", "port_in_use", "redis_alive"]


class PortInUse(RuntimeError):
    """A port the stack must listen on is held by a process it did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when a listening socket holds ``port`` on ``host`` (or on every address).

    SO_REUSEADDR, as the servers themselves set it, so a closed connection still in TIME_WAIT
    does not count as in use."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def redis_alive(url: str, timeout_s: float = 1.0) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None,
               ok: tuple[int, ...] = (200,)) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            resp = requests.get(url, timeout=2)
            if resp.status_code in ok:
                return
            last = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout_s} s ({last})")


@dataclass
class StackConfig:
    """Where each process listens and how the stack is configured (environment of the children)."""

    gateway_port: int = 8080
    eligibility_port: int = 8091
    response_port: int = 8092
    dosimetry_port: int = 8093
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = ""
    data_dir: Path = ROOT / "var"
    workers: int = 1
    gateway_workers: int = 2
    service_workers: int = 2
    with_orthanc: bool = False
    orthanc_port: int = 8042
    orthanc_dicom_port: int = 4242
    orthanc_hook: bool = True  # load the stable-study Lua script
    env: dict[str, str] = field(default_factory=dict)

    def claim_ports(self, notice: Callable[[str], None]) -> None:
        """Move each internal port another process holds to a free one (``notice`` says which);
        raise :class:`PortInUse` when the gateway's port is held. Nothing is stopped."""
        if port_in_use(self.gateway_port):
            raise PortInUse(f"port {self.gateway_port} (GATEWAY_PORT) is in use by another process; "
                            "netliver leaves it alone: set GATEWAY_PORT to a free port")
        internal = [("eligibility_port", "the eligibility service", "ELIGIBILITY_URL"),
                    ("response_port", "the response service", "RESPONSE_URL"),
                    ("dosimetry_port", "the dosimetry service", "DOSIMETRY_URL")]
        if self.with_orthanc:
            internal += [("orthanc_port", "Orthanc's HTTP API", "ORTHANC_PORT"),
                         ("orthanc_dicom_port", "Orthanc's DICOM listener", "ORTHANC_DICOM_PORT")]
        for attr, what, variable in internal:
            port = int(getattr(self, attr))
            if port_in_use(port):
                moved = free_port()
                setattr(self, attr, moved)
                holder = ("another process (another PACS, such as the Debian orthanc service?)"
                          if attr.startswith("orthanc") else "another process")
                notice(f"port {port} ({variable}) is in use by {holder}; netliver leaves it running "
                       f"and starts {what} on port {moved} instead")

    @classmethod
    def ephemeral(cls, data_dir: Path, **overrides: object) -> StackConfig:
        """All ports free and random (tests)."""
        cfg = cls(gateway_port=free_port(), eligibility_port=free_port(), response_port=free_port(),
                  dosimetry_port=free_port(), orthanc_port=free_port(), orthanc_dicom_port=free_port(),
                  data_dir=data_dir)
        for key, value in overrides.items():
            setattr(cfg, key, value)
        return cfg


class Stack:
    """The running processes of one stack."""

    def __init__(self, config: StackConfig, base_env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = config.data_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.orthanc: object | None = None
        self.base_env = dict(os.environ if base_env is None else base_env)
        self._worker_seq = 0

    # -- configuration ------------------------------------------------------------------------
    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.config.gateway_port}"

    def env(self) -> dict[str, str]:
        cfg = self.config
        env = dict(self.base_env)
        env.update({
            "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            "GATEWAY_PORT": str(cfg.gateway_port),
            "ELIGIBILITY_URL": f"http://127.0.0.1:{cfg.eligibility_port}",
            "RESPONSE_URL": f"http://127.0.0.1:{cfg.response_port}",
            "DOSIMETRY_URL": f"http://127.0.0.1:{cfg.dosimetry_port}",
            "GATEWAY_INTERNAL_URL": self.gateway_url,
            "REDIS_URL": cfg.redis_url,
            "NETLIVER_DATA_DIR": str(cfg.data_dir),
            "DATABASE_URL": cfg.database_url or f"sqlite:///{cfg.data_dir / 'netliver.db'}",
        })
        if cfg.with_orthanc:  # the stack's own Orthanc, unless the environment names a PACS
            env["ORTHANC_URL"] = env.get("ORTHANC_URL") or f"http://127.0.0.1:{cfg.orthanc_port}"
            env["DICOMWEB_URL"] = env.get("DICOMWEB_URL") or f"http://127.0.0.1:{cfg.orthanc_port}/dicom-web"
        env.update(cfg.env)
        return env

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(argv, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[name] = proc
        return proc

    def _gunicorn(self, name: str, app: str, port: int, workers: int) -> subprocess.Popen[bytes]:
        return self._spawn(name, [
            sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "-c", "python:netliver.serving.gunicorn_conf", "--threads", "4", "--timeout", "120", "--graceful-timeout", "10",
            "--access-logfile", "-", "--name", f"netliver-{name}", app])

    def start_gateway(self, name: str, port: int, env: Mapping[str, str], timeout_s: float = 60.0,
                      wait_path: str = "/fhir/metadata") -> str:
        """Another gateway process on ``port`` with ``env`` over the stack's environment
        (e.g. another auth mode, rate limit, or an upstream FHIR server); returns its URL."""
        saved = dict(self.config.env)
        self.config.env.update({"GATEWAY_PORT": str(port), **env})
        try:
            proc = self._gunicorn(name, "gateway.app:create_app()", port, 1)
        finally:
            self.config.env = saved
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}{wait_path}", timeout_s, proc, ok=(200, 401))
        return url

    def start_worker(self, name: str | None = None) -> subprocess.Popen[bytes]:
        self._worker_seq += 1
        name = name or f"worker{self._worker_seq}"
        queue = self.env().get("JOB_QUEUE", "netliver-dosimetry")
        return self._spawn(name, [
            sys.executable, "-m", "celery", "-A", "services.dosimetry.worker.main", "worker",
            "-Q", queue, "--concurrency", "1", "--pool", "prefork", "--loglevel", "INFO",
            "-n", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"])

    def _ensure_redis(self) -> None:
        url = self.config.redis_url
        if redis_alive(url):
            return
        parsed = urlparse(url)
        if parsed.hostname not in {"127.0.0.1", "localhost", "::1"}:
            raise RuntimeError(f"REDIS_URL {url} does not answer and is not local")
        if port_in_use(parsed.port or 6379):
            raise PortInUse(f"port {parsed.port or 6379} (REDIS_URL {url}) is held by a process that does "
                            "not answer as Redis; netliver leaves it alone: point REDIS_URL at a Redis")
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self._spawn("redis", [binary, "--port", str(parsed.port or 6379), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--daemonize", "no"])
        deadline = time.monotonic() + 10
        while not redis_alive(url):
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not start")
            time.sleep(0.1)

    def _start_orthanc(self) -> None:
        from infra.orthanc_launch import start_orthanc

        self.orthanc = start_orthanc(self.config.data_dir / "orthanc", self.config.orthanc_port,
                                     self.config.orthanc_dicom_port, self.gateway_url,
                                     self.env().get("INTERNAL_TOKEN", "netliver-dev-internal"),
                                     hook=self.config.orthanc_hook)

    def start(self, timeout_s: float = 90.0) -> Stack:
        cfg = self.config
        cfg.claim_ports(lambda text: print(f"netliver: {text}", file=sys.stderr, flush=True))
        try:
            self._ensure_redis()
            if cfg.with_orthanc:
                self._start_orthanc()
            services = [("eligibility", "services.eligibility.app:create_app()", cfg.eligibility_port),
                        ("response", "services.response.app:create_app()", cfg.response_port),
                        ("dosimetry", "services.dosimetry.app:create_app()", cfg.dosimetry_port)]
            for name, app, port in services:
                self._gunicorn(name, app, port, cfg.service_workers)
            self._gunicorn("gateway", "gateway.app:create_app()", cfg.gateway_port, cfg.gateway_workers)
            for _ in range(cfg.workers):
                self.start_worker()
            for name, _, port in services:
                _wait_http(f"http://127.0.0.1:{port}/health", timeout_s, self.procs[name])
            _wait_http(f"{self.gateway_url}/fhir/metadata", timeout_s, self.procs["gateway"])
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self, grace_s: float = 10.0) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        if self.orthanc is not None:
            self.orthanc.terminate()  # type: ignore[attr-defined]  # exits while the others do
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs.clear()
        if self.orthanc is not None:
            self.orthanc.stop()  # type: ignore[attr-defined]
            self.orthanc = None

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def running(config: StackConfig, base_env: Mapping[str, str] | None = None) -> Iterator[Stack]:
    stack = Stack(config, base_env).start()
    try:
        yield stack
    finally:
        stack.stop()


def _port_of(url: str | None, default: int) -> int:
    return (urlparse(url).port or default) if url else default


def _config_from_env() -> StackConfig:
    env = os.environ
    cfg = StackConfig(
        gateway_port=int(env.get("GATEWAY_PORT", 8080)),
        eligibility_port=_port_of(env.get("ELIGIBILITY_URL"), 8091),
        response_port=_port_of(env.get("RESPONSE_URL"), 8092),
        dosimetry_port=_port_of(env.get("DOSIMETRY_URL"), 8093),
        redis_url=env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        database_url=env.get("DATABASE_URL", ""),
        data_dir=Path(env.get("NETLIVER_DATA_DIR", ROOT / "var")).resolve(),
        workers=int(env.get("WORKERS", 1)),
        with_orthanc=not env.get("ORTHANC_URL") and shutil.which("Orthanc") is not None,
        orthanc_port=int(env.get("ORTHANC_PORT", 8042)),
        orthanc_dicom_port=int(env.get("ORTHANC_DICOM_PORT", 4242)),
    )
    cfg.env.setdefault("AUTH_MODE", env.get("AUTH_MODE", "off"))
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack")
    parser.add_argument("command", choices=["serve"])
    parser.parse_args(argv)
    cfg = _config_from_env()
    if cfg.env["AUTH_MODE"] == "off":
        print("WARNING: AUTH_MODE=off - every caller on this machine has full access. "
              "Local development only.", file=sys.stderr)
    stack = Stack(cfg)
    stop = stop_on_signals()
    try:
        stack.start()
    except PortInUse as exc:
        print(f"netliver: {exc}", file=sys.stderr, flush=True)
        return 2
    pacs = f", PACS http://127.0.0.1:{cfg.orthanc_port}" if cfg.with_orthanc else ""
    print(f"netliver is up: gateway {stack.gateway_url}/fhir{pacs} (logs in {stack.log_dir}); "
          "Ctrl-C stops it.", flush=True)
    try:
        while not stop.requested:
            dead = [n for n, p in stack.procs.items() if p.poll() is not None]
            if dead:
                print(f"process(es) exited: {', '.join(dead)}; stopping", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        stack.stop()
        print("netliver stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
