"""Voxel dosimetry of synthetic studies stored in a real Orthanc, fetched over DICOMweb.

Analytic references (EANM 2022; MIRD Pamphlet 17):

- uniform sphere, LDM: mean dose in the sphere = C·A_sphere/M_sphere with
  A_sphere = A × (counts in the sphere / all counts) and M_sphere = voxels × voxel volume × ρ;
- two-compartment liver (Ho 1996 partition model, T/N = 4, no lung shunt):
  D_N = C·A/(T/N·M_T + M_N), D_T = T/N·D_N, and the whole liver C·A/M_liver;
- lung shunt: D_lung = C·A·LSF/M_lung with the CT density of lung.

The phantoms are designed on the emission grid (exact voxel sets, integer counts) and the SEG
is that design on the CT, so the analytic values use the design's voxel counts; ρ comes from the
cited HU-density table points at the design's HU (values repeated in tests/support/density.py from the published fit,
not read from the implementation).

Tolerance 0.5 % (1 % for lung): the only deviations are (a) CT noise (σ = 10 HU per CT voxel,
3.5 HU after the 8-voxel average → ≤ 0.4 % per voxel in soft tissue, 1.4 % in lung; averaged
over > 80 voxels and entering the mean only at second order through 1/ρ) and (b) uint16
storage of PET values (≤ 1/64000 of the maximum per voxel). A geometric error of one voxel
would mix background into the VOI and move the means by > 5 %, so the tests can fail.
"""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from copy import deepcopy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pydicom
import pytest

from infra.orthanc_process import OrthancProcess, free_port
from services.dosimetry.imaging.dicomweb import make_client
from services.dosimetry.imaging.errors import (
    CtMismatchError,
    GeometryError,
    JobCancelledError,
    NoActivitySeriesError,
    PacsUnavailableError,
    SegmentationError,
    SeriesNotFoundError,
)
from services.dosimetry.imaging.phantoms import (
    build_study,
    dataset_bytes,
    lung_shunt,
    make_seg,
    shifted_copy,
    sphere_in_cylinder,
    two_compartment_liver,
    upload_datasets,
    upload_study,
)
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from services.dosimetry.imaging.rtdose import rtdose_array
from tests.support.density import rho_g_per_ml

C_GY_KG_PER_GBQ = 49.67  # EANM 2022 dose constant
ACTIVITY_GBQ = 2.0

def _mass_kg(phantom: Any, names: tuple[str, ...], hu: float) -> float:
    voxels = int(phantom.mask(*names).sum())
    return voxels * phantom.voxel_ml * rho_g_per_ml(hu) / 1000.0


def _voi(result: Any, name: str) -> Any:
    matches = [v for v in result.vois if v.name == name]
    assert matches, f"no VOI {name!r} in {[v.name for v in result.vois]}"
    return matches[0]


@pytest.fixture(scope="module")
def client(orthanc: OrthancProcess) -> Any:
    return make_client(orthanc.dicomweb_url)


@pytest.mark.parametrize(("modality", "per_slice"), [("NM", False), ("NM", True), ("PT", False)])
def test_uniform_sphere_ldm_mean_matches_analytic(orthanc: OrthancProcess, client: Any, modality: str,
                                                  per_slice: bool) -> None:
    phantom = sphere_in_cylinder()
    study = build_study(phantom, modality, seed=30 if per_slice else 1, nm_per_slice=per_slice)
    upload_study(orthanc.url, study)
    stages: list[tuple[str, float]] = []
    result = run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm", study.seg_series_uid,
                                 progress=lambda s, f: stages.append((s, f)))
    expected = C_GY_KG_PER_GBQ * ACTIVITY_GBQ * phantom.activity_fraction("sphere") / _mass_kg(phantom, ("sphere",), 0.0)
    sphere = _voi(result, "sphere")
    assert sphere.metrics["Dmean"] == pytest.approx(expected, rel=0.005)
    assert sphere.voxel_count == int(phantom.mask("sphere").sum())
    background = _voi(result, "background")
    expected_bg = expected / 8.0  # same density, 1/8 of the concentration
    assert background.metrics["Dmean"] == pytest.approx(expected_bg, rel=0.005)
    assert [s for s, _ in stages] == ["fetch", "decode", "resample", "dose", "dvh", "store", "done"]
    assert set(result.timings_s) == {"fetch", "decode", "resample", "dose", "dvh", "store"}
    assert result.modality == modality and result.nuclide == "Y-90" and not result.simulation


def test_uniform_sphere_kernel_dose_is_below_ldm_by_beta_escape(orthanc: OrthancProcess, client: Any) -> None:
    """DVK spreads beta energy across the sphere surface: the sphere mean is lower than LDM's
    (energy escapes to the 8× colder background) but not by more than the Y-90 range allows
    (mean range 2.5 mm vs 30 mm radius, plus the 4.42 mm voxel blur: < 15 %)."""
    phantom = sphere_in_cylinder()
    study = build_study(phantom, "PT", seed=2)
    upload_study(orthanc.url, study)
    ldm = run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm", study.seg_series_uid, store=False)
    dvk = run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "dvk", study.seg_series_uid, store=False)
    ratio = _voi(dvk, "sphere").metrics["Dmean"] / _voi(ldm, "sphere").metrics["Dmean"]
    assert 0.85 < ratio < 1.0
    # The hottest voxels (centre of the sphere) are far from the surface: both methods agree there.
    assert _voi(dvk, "sphere").metrics["D50"] == pytest.approx(_voi(ldm, "sphere").metrics["D50"], rel=0.03)


def test_two_compartment_liver_matches_partition_model(orthanc: OrthancProcess, client: Any) -> None:
    phantom = two_compartment_liver()
    study = build_study(phantom, "PT", seed=3)
    upload_study(orthanc.url, study)
    result = run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm", study.seg_series_uid)
    m_t = _mass_kg(phantom, ("tumour 1", "tumour 2"), 60.0)
    m_n = _mass_kg(phantom, ("normal liver",), 60.0)
    d_n = C_GY_KG_PER_GBQ * ACTIVITY_GBQ / (4.0 * m_t + m_n)
    d_t = 4.0 * d_n
    assert _voi(result, "tumour 1").metrics["Dmean"] == pytest.approx(d_t, rel=0.005)
    assert _voi(result, "tumour 2").metrics["Dmean"] == pytest.approx(d_t, rel=0.005)
    assert _voi(result, "liver").metrics["Dmean"] == pytest.approx(C_GY_KG_PER_GBQ * ACTIVITY_GBQ / (m_t + m_n), rel=0.005)
    assert _voi(result, "tumour 1").metrics["V100"] == pytest.approx(100.0 if d_t >= 100 else 0.0, abs=1.0)


def test_lung_shunt_maa_simulation(orthanc: OrthancProcess, client: Any) -> None:
    phantom = lung_shunt()
    study = build_study(phantom, "NM", seed=4)
    upload_study(orthanc.url, study)
    result = run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm", study.seg_series_uid)
    lsf = phantom.activity_fraction("lungs")
    assert result.lung_shunt_fraction == pytest.approx(lsf, rel=1e-6)
    assert 0.08 < lsf < 0.12
    m_lung = _mass_kg(phantom, ("lungs",), -750.0)
    assert _voi(result, "lungs").metrics["Dmean"] == pytest.approx(C_GY_KG_PER_GBQ * ACTIVITY_GBQ * lsf / m_lung, rel=0.01)
    assert result.simulation and result.nuclide == "Tc-99m"
    assert any("simulation" in w for w in result.warnings)
    # a predicted dose, not the record of a delivered treatment; no RT Plan exists to reference, so the
    # treatment is described by a plan overview (PS3.3 C.8.8.3)
    assert result.rtdose_series_uid is not None
    [stored] = client.retrieve_series(study.study_uid, result.rtdose_series_uid)
    assert stored.DoseSummationType == "PLAN_OVERVIEW" and stored.TissueHeterogeneityCorrection == "IMAGE"
    assert "predicted" in stored.DoseComment


def test_rtdose_is_stored_in_the_same_study_over_the_ct(orthanc: OrthancProcess, client: Any) -> None:
    phantom = two_compartment_liver()
    study = build_study(phantom, "NM", seed=5)
    upload_study(orthanc.url, study)
    result = run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm", study.seg_series_uid)
    assert result.rtdose_series_uid and result.rtdose_sop_instance_uid
    stored = client.retrieve_series(study.study_uid, result.rtdose_series_uid)
    assert len(stored) == 1
    ds = stored[0]
    assert ds.Modality == "RTDOSE" and ds.SOPInstanceUID == result.rtdose_sop_instance_uid
    assert ds.StudyInstanceUID == study.study_uid
    assert ds.FrameOfReferenceUID == study.ct[0].FrameOfReferenceUID
    assert ds.DoseUnits == "GY" and ds.DoseType == "PHYSICAL" and ds.DoseSummationType == "PLAN_OVERVIEW"
    assert ds.DoseComment.endswith("delivered")
    dose = rtdose_array(ds)
    assert dose.shape == result.dose_gy.shape
    np.testing.assert_allclose(dose, result.dose_gy, atol=float(ds.DoseGridScaling))
    # Running the same job again replaces the instance instead of adding a second one.
    run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm", study.seg_series_uid)
    assert len(client.retrieve_series(study.study_uid, result.rtdose_series_uid)) == 1


def test_automatic_liver_voi_is_labelled(orthanc: OrthancProcess, client: Any) -> None:
    phantom = two_compartment_liver()
    study = build_study(phantom, "PT", seed=6, with_seg=False)
    upload_study(orthanc.url, study)
    result = run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm", store=False)
    assert result.automatic_voi
    [voi] = result.vois
    assert voi.source == "automatic" and "automatic" in voi.name
    assert voi.voxel_count == int(phantom.mask("normal liver", "tumour 1", "tumour 2").sum())
    assert any("automatic" in w for w in result.warnings)


# -- bad inputs -------------------------------------------------------------------------------

def test_study_without_nm_or_pt(orthanc: OrthancProcess, client: Any) -> None:
    study = build_study(two_compartment_liver(), "NM", seed=10, with_seg=False)
    upload_datasets(orthanc.url, study.ct)
    with pytest.raises(NoActivitySeriesError, match=r"no NM .* or PT") as err:
        run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm")
    assert err.value.status == 422 and err.value.to_fhir_error().status == 422


def test_missing_geometry_tag_is_named(orthanc: OrthancProcess, client: Any) -> None:
    study = build_study(two_compartment_liver(), "PT", seed=11, with_seg=False)
    for ds in study.activity:
        del ds.PixelSpacing
    upload_study(orthanc.url, study, include_seg=False)
    with pytest.raises(GeometryError, match=r"PixelSpacing \(0028,0030\)") as err:
        run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm")
    assert err.value.expression == "PixelSpacing"


def test_ct_in_another_frame_of_reference(orthanc: OrthancProcess, client: Any) -> None:
    study = build_study(two_compartment_liver(), "NM", seed=12, with_seg=False)
    other_ct = shifted_copy(study.ct, (0.0, 0.0, 0.0), "other-for", for_uid="1.2.826.0.1.3680043.8.498.1")
    upload_datasets(orthanc.url, [*study.activity, *other_ct])
    with pytest.raises(CtMismatchError, match="another Frame of Reference"):
        run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm")


def test_ct_that_does_not_overlap(orthanc: OrthancProcess, client: Any) -> None:
    study = build_study(two_compartment_liver(), "NM", seed=13, with_seg=False)
    far_ct = shifted_copy(study.ct, (0.0, 0.0, 1000.0), "far-ct")
    upload_datasets(orthanc.url, [*study.activity, *far_ct])
    with pytest.raises(CtMismatchError, match="covers 0%"):
        run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm")


def test_seg_that_does_not_overlap(orthanc: OrthancProcess, client: Any) -> None:
    phantom = two_compartment_liver()
    study = build_study(phantom, "NM", seed=14, with_seg=False)
    far_seg = make_seg(phantom, shifted_copy(study.ct, (0.0, 0.0, 1000.0), "far-seg-source"), ("far-seg", 14))
    upload_datasets(orthanc.url, [*study.datasets(), far_seg])
    with pytest.raises(SegmentationError, match="does not overlap"):
        run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm", str(far_seg.SeriesInstanceUID))


def test_segmentation_uid_that_is_not_a_seg(orthanc: OrthancProcess, client: Any) -> None:
    study = build_study(two_compartment_liver(), "NM", seed=15, with_seg=False)
    upload_study(orthanc.url, study)
    with pytest.raises(SegmentationError, match="not a DICOM SEG or RTSTRUCT"):
        run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm", study.ct_series_uid)


def test_unknown_study(client: Any) -> None:
    with pytest.raises(SeriesNotFoundError, match="not in the PACS"):
        run_voxel_dosimetry(client, "1.2.3.4.5.6.7.8.9", ACTIVITY_GBQ, "ldm")


def test_unreachable_pacs_is_503() -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=2.0)
    # dicomweb-client's own five attempts on the refused connection, 10 ms apart and doubling
    # instead of 2 s (its default waits 30 s in all before the error under test)
    client.set_http_retry_params(wait_exponential_multiplier=10)
    with pytest.raises(PacsUnavailableError, match="could not be reached") as err:
        run_voxel_dosimetry(client, "1.2.3", ACTIVITY_GBQ, "ldm")
    fhir = err.value.to_fhir_error()
    assert fhir.status == 503 and fhir.headers.get("Retry-After")


def test_cancelled_mid_run_stores_nothing(orthanc: OrthancProcess, client: Any) -> None:
    study = build_study(two_compartment_liver(), "NM", seed=16)
    upload_study(orthanc.url, study)
    seen: list[str] = []

    def cancelled() -> bool:
        return "dose" in seen  # cancel once the dose stage has started

    with pytest.raises(JobCancelledError) as err:
        run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm", study.seg_series_uid,
                            progress=lambda s, f: seen.append(s), cancelled=cancelled)
    assert err.value.stage == "dvh"
    modalities = {s["00080060"]["Value"][0] for s in client.search_for_series(study_instance_uid=study.study_uid)}
    assert "RTDOSE" not in modalities


# -- the Orthanc OnStableStudy hook -----------------------------------------------------------

class _Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        type(self).received.append((self.path, dict(self.headers.items()), body))
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    handler = type("Recorder", (_Recorder,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_lua_hook_posts_stable_study(orthanc_factory: Any, hook_server: Any) -> None:
    base, received = hook_server
    script = Path(__file__).resolve().parents[3] / "infra" / "orthanc" / "netliver.lua"
    pacs = orthanc_factory(lua_scripts=[script], extra_config={"StableAge": 1},
                           env={"NETLIVER_HOOK_URL": base + "/hooks/orthanc/stable-study",
                                "NETLIVER_HOOK_TOKEN": "s3cret"})
    study = build_study(sphere_in_cylinder(n=16, voxel_mm=4.42), "PT", seed=20, with_seg=False)
    orthanc_study_id = upload_study(pacs.url, study)
    deadline = time.monotonic() + 30
    while not received and time.monotonic() < deadline:
        time.sleep(0.2)
    assert received, "no POST from the OnStableStudy script; Orthanc log:\n" + pacs.log_tail()
    path, headers, body = received[0]
    assert path == "/hooks/orthanc/stable-study"
    assert json.loads(body) == {"ID": orthanc_study_id}
    assert headers.get("X-Internal-Token") == "s3cret"
    assert "json" in headers.get("Content-Type", "")
    # answered at once: the gateway must not resolve the study while Orthanc holds its Lua lock
    assert headers.get("Prefer") == "respond-async"


def test_orthanc_accepts_generated_instances_as_valid_dicom(orthanc: OrthancProcess) -> None:
    """Every generated object parses back with pydicom and Orthanc indexes it under its study."""
    study = build_study(lung_shunt(n=16), "NM", seed=21)
    for ds in study.datasets():
        back = pydicom.dcmread(io.BytesIO(dataset_bytes(ds)))
        assert back.StudyInstanceUID == study.study_uid
    upload_study(orthanc.url, study)
    with urllib.request.urlopen(f"{orthanc.url}/tools/lookup", data=study.study_uid.encode()) as resp:
        found = json.loads(resp.read())
    assert found and found[0]["Type"] == "Study"


def test_the_ct_in_the_activity_frame_of_reference_is_chosen(orthanc: OrthancProcess, client: Any) -> None:
    """A second CT (another Frame of Reference, e.g. a diagnostic CT) must not be used; with a
    second, planar NM series the reconstructed tomogram is used."""
    phantom = two_compartment_liver()
    study = build_study(phantom, "NM", seed=22)
    other_ct = shifted_copy(study.ct, (0.0, 0.0, 0.0), "diagnostic-ct", for_uid="1.2.826.0.1.3680043.8.498.2")
    planar = deepcopy(study.activity[0])
    planar.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.22.1"
    planar.SOPInstanceUID = planar.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.22.2"
    planar.ImageType = ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    upload_datasets(orthanc.url, [*study.datasets(), *other_ct, planar])
    result = run_voxel_dosimetry(client, study.study_uid, ACTIVITY_GBQ, "ldm", study.seg_series_uid, store=False)
    m_t = _mass_kg(phantom, ("tumour 1", "tumour 2"), 60.0)
    m_n = _mass_kg(phantom, ("normal liver",), 60.0)
    assert _voi(result, "tumour 1").metrics["Dmean"] == pytest.approx(
        4.0 * C_GY_KG_PER_GBQ * ACTIVITY_GBQ / (4.0 * m_t + m_n), rel=0.005)
    assert any("2 NM series" in w for w in result.warnings)
