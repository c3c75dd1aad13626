"""An independent FHIR R4 engine for tests: Medplum's ``@medplum/fhir-router`` with its in-memory
repository behind the small Node HTTP server ``server.mjs`` beside this file.

:func:`ensure_installed` installs the npm packages pinned in ``package.json`` /
``package-lock.json`` (``npm ci``) into the gitignored project folder ``var/node/fhir_engine``
(``NETLIVER_NODE_DIR`` overrides ``var/node``) when they are missing or the pins changed; a file
lock keeps parallel pytest processes from installing at once. :func:`start_engine` starts one
server on a free loopback port and waits for its ``LISTENING <port>`` line.

Beyond the RESTful API the server answers ``POST <base>/$reset`` (empties the repository) and
``POST <base>/$validate`` (Medplum's StructureDefinition/FHIRPath validator on a resource).

No pytest import at module level, so scripts can use it too::

    with start_engine(tmp_dir) as engine:
        requests.post(f"{engine.base_url}/Patient", json={"resourceType": "Patient"})
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "EngineUnavailable",
    "FhirEngine",
    "ensure_installed",
    "fhir_engine_fixture",
    "install_dir",
    "start_engine",
]

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[2]
_SOURCES = ("package.json", "package-lock.json", "server.mjs")
_PIN_FILES = ("package.json", "package-lock.json")
_MARKER = Path("node_modules") / "@medplum" / "fhir-router" / "package.json"


class EngineUnavailable(RuntimeError):
    """Node or npm is missing, the install failed, or the server did not start."""


def install_dir() -> Path:
    """Where the engine's packages live: ``var/node/fhir_engine`` in the repository."""
    base = Path(os.environ.get("NETLIVER_NODE_DIR", str(_REPO / "var" / "node")))
    return base / "fhir_engine"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EngineUnavailable(f"{name} is not installed (infra/install-system-deps.sh installs Node.js)")
    return path


def _same(a: Path, b: Path) -> bool:
    return b.is_file() and a.read_bytes() == b.read_bytes()


def _copy_atomically(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_installed(timeout_s: float = 600.0) -> Path:
    """Install the pinned packages when missing or changed; return the folder to run from."""
    target = install_dir()
    with _locked(target):
        pins_current = all(_same(_HERE / name, target / name) for name in _PIN_FILES)
        if not (pins_current and (target / _MARKER).is_file()):
            for name in _PIN_FILES:
                _copy_atomically(_HERE / name, target / name)
            result = subprocess.run(
                [_tool("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=target, capture_output=True, text=True, timeout=timeout_s, check=False)
            if result.returncode != 0 or not (target / _MARKER).is_file():
                raise EngineUnavailable(f"npm ci failed in {target}: {result.stderr.strip()[-2000:]}")
        if not _same(_HERE / "server.mjs", target / "server.mjs"):
            _copy_atomically(_HERE / "server.mjs", target / "server.mjs")
    return target


@dataclass
class FhirEngine:
    """A running engine process; ``base_url`` is its FHIR base (no trailing slash)."""

    base_url: str
    process: subprocess.Popen[str]
    log_path: Path
    _log: IO[str] | None = field(default=None, repr=False)

    def reset(self) -> None:
        """Empty the repository (every resource and its history)."""
        import requests

        requests.post(f"{self.base_url}/$reset", timeout=30).raise_for_status()

    def validate(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Medplum's validator on ``resource``: an OperationOutcome (severity ``error`` issues
        mean invalid)."""
        import requests

        resp = requests.post(f"{self.base_url}/$validate", json=resource, timeout=30)
        resp.raise_for_status()
        outcome: dict[str, Any] = resp.json()
        return outcome

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> FhirEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_port(proc: subprocess.Popen[str], timeout_s: float) -> int | None:
    found: list[int] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("LISTENING "):
                found.append(int(line.split()[1]))
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return found[0] if found else None


def start_engine(log_dir: Path, *, next_links: bool = True, base_path: str = "/fhir",
                 startup_timeout_s: float = 180.0) -> FhirEngine:
    """Install if needed and start one engine on a free loopback port.

    ``next_links=False`` makes search bundles carry ``Bundle.total`` without ``next`` links, like
    servers that leave paging by ``_offset`` to the client."""
    folder = ensure_installed()
    node = _tool("node")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"fhir-engine-{os.getpid()}-{time.monotonic_ns()}.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed by FhirEngine.stop
    env = {**os.environ, "FHIR_ENGINE_BASE": base_path,
           "FHIR_ENGINE_NEXT_LINKS": "1" if next_links else "0"}
    proc = subprocess.Popen([node, "server.mjs", "--port", "0", "--host", "127.0.0.1"],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    port = _read_port(proc, startup_timeout_s)
    engine = FhirEngine(f"http://127.0.0.1:{port}{base_path}", proc, log_path, log)
    if port is None:
        engine.stop()
        raise EngineUnavailable(f"FHIR engine did not start: {log_path.read_text()[-2000:]}")
    return engine


def fhir_engine_fixture(scope: str = "session", **options: Any) -> Callable[..., Any]:
    """A pytest fixture yielding a running :class:`FhirEngine` (``options`` go to
    :func:`start_engine`). Skips when Node.js is not installed; fails when the install fails.

    In a conftest or test module: ``fhir_engine = fhir_engine_fixture()``."""
    import pytest

    @pytest.fixture(scope=scope)  # type: ignore[call-overload,untyped-decorator,unused-ignore]
    def _fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirEngine]:
        if shutil.which("node") is None or shutil.which("npm") is None:
            pytest.skip("Node.js and npm are not installed")
        engine = start_engine(tmp_path_factory.mktemp("fhir-engine"), **options)
        try:
            yield engine
        finally:
            engine.stop()

    return _fixture
