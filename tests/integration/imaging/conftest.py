"""A real Orthanc (Debian packages orthanc + orthanc-dicomweb) for the imaging tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.orthanc import OrthancProcess, orthanc_available, orthanc_factory_fixture

orthanc_factory = orthanc_factory_fixture()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancProcess]:
    """One Orthanc per test module (uploads of different studies do not interfere)."""
    if not orthanc_available():
        pytest.skip("Orthanc and orthanc-dicomweb are not installed")
    proc = OrthancProcess(tmp_path_factory.mktemp("orthanc-imaging"))
    proc.start()
    yield proc
    proc.stop()
