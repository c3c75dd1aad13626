"""Outside values never walk the PACS API: the Orthanc hook's ``ID`` must be an Orthanc id and
every id it puts into an Orthanc path is quoted; DICOM UIDs are checked before dicomweb-client
puts them into DICOMweb paths (Orthanc Book, "Orthanc identifiers"; PS3.5 §9.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from netliver.pacs_ids import is_dicom_uid, is_orthanc_id, url_segment
from netliver.settings import Settings
from services.dosimetry.imaging import dicomweb
from services.dosimetry.imaging.errors import ImagingError
from tests.support.recording_http import RecordingServer

pytestmark = pytest.mark.unit

STUDY_ID = "27f7126f-4f66a63e-2fa1c4ca-73e1bd2c-3f6ec8d1"
HOSTILE_IDS = ["../system", "../studies", "..%2fsystem", "#", "%00", "abc\x00", "\ud800",
               STUDY_ID.upper(), STUDY_ID + "/../../system", STUDY_ID + "\x00", STUDY_ID[:-1]]


def test_orthanc_ids_have_orthancs_form_exactly() -> None:
    assert is_orthanc_id(STUDY_ID)
    for bad in [*HOSTILE_IDS, "", None, 42, STUDY_ID.replace("-", "")]:
        assert not is_orthanc_id(bad), bad


def test_dicom_uids_are_digits_and_dots_up_to_64() -> None:
    assert is_dicom_uid("1.2.840.10008.5.1.4.1.1.481.2")
    assert is_dicom_uid("1." + "2" * 62) and not is_dicom_uid("1." + "2" * 63)
    for bad in ["", "1..2", ".1", "1.", "../studies", "1.2/3", "1.2 ", None]:
        assert not is_dicom_uid(bad), bad


def test_url_segments_are_quoted_and_surrogates_refused() -> None:
    assert url_segment("../system") == "..%2Fsystem"
    assert url_segment("a#b?c") == "a%23b%3Fc"
    with pytest.raises(ValueError):
        url_segment("\ud800")


@pytest.fixture
def pacs() -> Iterator[RecordingServer]:
    with RecordingServer(body={"Version": "test"}) as server:
        yield server


@pytest.fixture
def client(tmp_path: Path, pacs: RecordingServer) -> FlaskClient:
    settings = Settings.from_env({
        "AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "ORTHANC_URL": pacs.url,
        "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING"})
    return create_app(settings).test_client()


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_the_hook_refuses_ids_that_are_not_orthanc_ids_before_calling_the_pacs(
        client: FlaskClient, pacs: RecordingServer, hostile: str) -> None:
    resp = client.post("/hooks/orthanc/stable-study", json={"ID": hostile})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["expression"] == ["ID"]
    assert pacs.paths == []


def test_ids_orthanc_lists_are_checked_too(tmp_path: Path) -> None:
    # A study whose series list holds a hostile "id" (a compromised or broken PACS): the hook
    # stops at it rather than requesting /series/../system.
    study = {"MainDicomTags": {"StudyInstanceUID": "1.2.3"}, "PatientMainDicomTags": {},
             "Series": ["../system"]}
    with RecordingServer(body=study) as pacs:
        settings = Settings.from_env({
            "AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "ORTHANC_URL": pacs.url,
            "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING"})
        resp = create_app(settings).test_client().post("/hooks/orthanc/stable-study", json={"ID": STUDY_ID})
        assert resp.status_code == 503, resp.get_data(as_text=True)
        assert pacs.paths == [f"/studies/{STUDY_ID}"]


class RecordingDicomweb:
    """Records the DICOMweb calls the fetch code makes (dicomweb-client's method names)."""

    def __init__(self, series_uid: str = "1.2.3.4") -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.series = [{"0020000E": {"Value": [series_uid]}, "00080060": {"Value": ["SEG"]}}]

    def search_for_series(self, *args: Any, **kwargs: Any) -> list[Any]:
        self.calls.append(("search_for_series", args + tuple(kwargs.values())))
        return self.series

    def retrieve_series(self, *args: Any) -> list[Any]:
        self.calls.append(("retrieve_series", args))
        return []


@pytest.mark.parametrize("uid", ["../../system", "1.2.3/../../studies", "1.2.3#", "1.2.3\x00"])
def test_study_uids_are_checked_before_a_dicomweb_request(uid: str) -> None:
    client = RecordingDicomweb()
    with pytest.raises(ImagingError) as err:
        dicomweb.fetch_study(client, uid)
    assert err.value.expression == "studyInstanceUid" and client.calls == []
    # A series UID the PACS (or the caller) gave is checked before it goes into a WADO-RS path.
    client = RecordingDicomweb(series_uid=uid)
    with pytest.raises(ImagingError):
        dicomweb.fetch_segmentations(client, "1.2.3", uid)
    assert client.calls == []
