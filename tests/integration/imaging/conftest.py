"""A real Orthanc (Debian packages orthanc + orthanc-dicomweb) for the imaging tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from infra.orthanc_process import OrthancProcess, orthanc_available


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancProcess]:
    """One Orthanc per test module (uploads of different studies do not interfere)."""
    if not orthanc_available():
        pytest.skip("Orthanc and orthanc-dicomweb are not installed")
    proc = OrthancProcess(tmp_path_factory.mktemp("orthanc-imaging"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def orthanc_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., OrthancProcess]]:
    """``make(lua_scripts=(), extra_config=None, env=None) -> OrthancProcess``, started; every
    Orthanc it started is stopped at teardown."""
    if not orthanc_available():
        pytest.skip("Orthanc and orthanc-dicomweb are not installed")
    started: list[OrthancProcess] = []

    def make(lua_scripts: Sequence[str | os.PathLike[str]] = (),
             extra_config: Mapping[str, Any] | None = None,
             env: Mapping[str, str] | None = None) -> OrthancProcess:
        proc = OrthancProcess(tmp_path_factory.mktemp("orthanc"), lua_scripts, extra_config, env=env)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()
