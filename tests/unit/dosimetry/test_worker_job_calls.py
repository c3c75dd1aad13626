"""The worker's job calls to the gateway (claim, progress, complete, fail), against a fake gateway.

The end-to-end suites run these calls over HTTP with real workers; here the same task code
(:func:`execute_job`) talks to an in-memory gateway that answers as ``/internal/jobs/{id}/…``
does, so every branch of the seam (granted or not, cancelled, lease lost, failure, gateway
down, already completed) is checked without processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from netliver.settings import Settings
from services.dosimetry.imaging.phantoms import build_study, two_compartment_liver
from services.dosimetry.worker import tasks
from services.dosimetry.worker.reporter import GatewayUnavailable, JobCancelled, JobReporter
from services.dosimetry.worker.tasks import JOB_KINDS, execute_job
from tests.support.memory_dicomweb import MemoryDicomweb

pytestmark = pytest.mark.unit

TOKEN = "a-long-test-secret-for-the-workers"
GATEWAY = "http://gateway.test"


@dataclass
class _Answer:
    status_code: int
    body: dict[str, Any] | None

    @property
    def content(self) -> bytes:
        return b"{}" if self.body is not None else b""

    def json(self) -> dict[str, Any]:
        return dict(self.body or {})


@dataclass
class FakeGateway:
    """Answers the job calls as the gateway does; ``answers`` overrides one action's answer."""

    job: dict[str, Any]
    claim_answer: dict[str, Any] | None = None
    answers: dict[str, Callable[[dict[str, Any]], _Answer]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def post(self, url: str, json: dict[str, Any], timeout: float, headers: dict[str, str]) -> _Answer:
        assert url.startswith(f"{GATEWAY}/internal/jobs/{self.job['id']}/")
        assert headers == {"X-Internal-Token": TOKEN}
        assert timeout > 0
        action = url.rsplit("/", 1)[-1]
        self.calls.append((action, json))
        if action in self.answers:
            return self.answers[action](json)
        if action == "claim":
            return _Answer(200, self.claim_answer or {"granted": True, "reason": "granted", "job": self.job})
        return _Answer(200, {"state": "ok"})

    def actions(self) -> list[str]:
        return [a for a, _ in self.calls]


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({"GATEWAY_INTERNAL_URL": GATEWAY, "INTERNAL_TOKEN": TOKEN, "LOG_LEVEL": "WARNING"})


def _job(kind: str = "fake", params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "job-1", "kind": kind, "params": params or {"x": 1}, "state": "requested"}


def _fake_kind(monkeypatch: pytest.MonkeyPatch, run: Callable[[dict[str, Any], JobReporter, Settings], Any]) -> None:
    monkeypatch.setitem(JOB_KINDS, "fake", run)


def _two_stages(params: dict[str, Any], reporter: JobReporter, settings: Settings) -> Any:
    reporter.progress("fetch", 0.0)
    reporter.progress("dose", 0.5)
    return ([{"resourceType": "Observation", "id": "o1"}], [{"type": "Observation", "reference": "Observation/o1"}],
            {"fetch": 0.1})


def test_a_granted_job_reports_progress_then_completes_once(monkeypatch: pytest.MonkeyPatch,
                                                           settings: Settings) -> None:
    _fake_kind(monkeypatch, _two_stages)
    gateway = FakeGateway(_job())
    assert execute_job("job-1", settings, "w1", session=gateway) == "completed"  # type: ignore[arg-type]
    # "dose", begun within MIN_REPORT_INTERVAL_S of "fetch", was held and the completion superseded it
    assert gateway.actions() == ["claim", "progress", "complete"]
    assert all(body["worker"] == "w1" for _, body in gateway.calls)
    assert [b["stage"] for a, b in gateway.calls if a == "progress"] == ["fetch"]
    complete = gateway.calls[-1][1]
    assert complete["resources"] == [{"resourceType": "Observation", "id": "o1"}]
    assert complete["outputs"] == [{"type": "Observation", "reference": "Observation/o1"}]
    assert complete["timings"]["fetch"] == 0.1 and complete["timings"]["total"] >= 0


@pytest.mark.parametrize(("reason", "outcome"), [
    ("leased by another worker", "held"), ("unknown job", "unknown"), ("job is completed", "done"),
    ("job is cancelled", "done")])
def test_a_refused_claim_runs_nothing(monkeypatch: pytest.MonkeyPatch, settings: Settings, reason: str,
                                      outcome: str) -> None:
    _fake_kind(monkeypatch, _two_stages)
    gateway = FakeGateway(_job(), claim_answer={"granted": False, "reason": reason, "job": None})
    assert execute_job("job-1", settings, "w1", session=gateway) == outcome  # type: ignore[arg-type]
    assert gateway.actions() == ["claim"]


@pytest.mark.parametrize(("state", "outcome"), [("cancelled", "cancelled"), ("lost", "lost"),
                                                 ("not-owner", "lost")])
def test_a_cancelled_or_lost_job_stops_at_its_next_report_and_writes_nothing(
        monkeypatch: pytest.MonkeyPatch, settings: Settings, state: str, outcome: str) -> None:
    _fake_kind(monkeypatch, _two_stages)
    gateway = FakeGateway(_job(), answers={"progress": lambda body: _Answer(200, {"state": state})})
    assert execute_job("job-1", settings, "w1", session=gateway) == outcome  # type: ignore[arg-type]
    # the first report's answer is acted on at the next report (sent without waiting) or, at the
    # latest, before the results would be written
    assert gateway.actions() in (["claim", "progress"], ["claim", "progress", "progress"])


def _writes_at_store(written: list[str]) -> Callable[[dict[str, Any], JobReporter, Settings], Any]:
    def run(params: dict[str, Any], reporter: JobReporter, settings: Settings) -> Any:
        for stage, fraction in (("fetch", 0.0), ("dose", 0.55), ("dvh", 0.8), ("store", 0.9)):
            reporter.progress(stage, fraction)
        written.append("RT Dose")  # what the store stage writes to the PACS
        return _two_stages(params, reporter, settings)

    return run


@pytest.mark.parametrize("state", ["cancelled", "lost"])
def test_a_job_cancelled_while_its_reports_are_on_their_way_writes_nothing(
        monkeypatch: pytest.MonkeyPatch, settings: Settings, state: str) -> None:
    """The gateway answers the first report slowly: the job goes on meanwhile, and the store
    stage's report waits for every answer, so the cancellation stops it before it writes."""
    release = threading.Event()

    def slow_then_cancelled(body: dict[str, Any]) -> _Answer:
        if body["stage"] == "fetch":
            assert release.wait(10)
            return _Answer(200, {"state": state})
        return _Answer(200, {"state": "ok"})

    written: list[str] = []
    _fake_kind(monkeypatch, _writes_at_store(written))
    gateway = FakeGateway(_job(), answers={"progress": slow_then_cancelled})
    threading.Timer(0.2, release.set).start()
    assert execute_job("job-1", settings, "w1", session=gateway) == ("cancelled" if state == "cancelled" else "lost")  # type: ignore[arg-type]
    assert written == [] and "complete" not in gateway.actions()
    # "dose" and "dvh" came within MIN_REPORT_INTERVAL_S: held, then superseded by "store", which
    # waited for the first answer and stopped there
    assert [b["stage"] for a, b in gateway.calls if a == "progress"] == ["fetch"]


def test_progress_reports_do_not_wait_for_the_gateway(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    release = threading.Event()
    seen: list[str] = []

    def slow(body: dict[str, Any]) -> _Answer:
        assert release.wait(10)
        return _Answer(200, {"state": "ok"})

    def run(params: dict[str, Any], reporter: JobReporter, settings: Settings) -> Any:
        reporter.progress("fetch", 0.0)
        reporter.progress("dose", 0.55)
        seen.append("went on")  # both reports sent, neither answered yet
        release.set()
        reporter.progress("store", 0.9)  # waits for the answers
        return _two_stages(params, reporter, settings)

    _fake_kind(monkeypatch, run)
    gateway = FakeGateway(_job(), answers={"progress": slow})
    assert execute_job("job-1", settings, "w1", session=gateway) == "completed"  # type: ignore[arg-type]
    assert seen == ["went on"]
    # "dose" (held: within MIN_REPORT_INTERVAL_S of "fetch") was superseded by "store"; the fake
    # kind's own two stages came within the interval after it, and the completion superseded them
    assert [b["stage"] for a, b in gateway.calls if a == "progress"] == ["fetch", "store"]
    assert gateway.actions()[-1] == "complete"


def test_a_job_that_cannot_succeed_fails_with_its_reason(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    class BadStudy(Exception):
        reason = "the study holds no activity series"

    def broken(params: dict[str, Any], reporter: JobReporter, settings: Settings) -> Any:
        reporter.progress("fetch", 0.0)
        raise BadStudy()

    _fake_kind(monkeypatch, broken)
    gateway = FakeGateway(_job())
    assert execute_job("job-1", settings, "w1", session=gateway) == "failed"  # type: ignore[arg-type]
    assert gateway.actions() == ["claim", "progress", "fail"]
    assert gateway.calls[-1][1]["reason"] == "the study holds no activity series"


def test_a_job_of_a_kind_this_worker_cannot_run_fails(settings: Settings) -> None:
    gateway = FakeGateway(_job(kind="monte-carlo"))
    assert execute_job("job-1", settings, "w1", session=gateway) == "failed"  # type: ignore[arg-type]
    assert gateway.actions() == ["claim", "fail"]
    assert "monte-carlo" in gateway.calls[-1][1]["reason"]


@pytest.mark.parametrize("action", ["claim", "progress", "complete"])
@pytest.mark.parametrize("status", [500, 503, 401, 403])
def test_a_gateway_that_cannot_answer_makes_the_task_retry(monkeypatch: pytest.MonkeyPatch, settings: Settings,
                                                          action: str, status: int) -> None:
    _fake_kind(monkeypatch, _two_stages)
    gateway = FakeGateway(_job(), answers={action: lambda body: _Answer(status, {"issue": []})})
    with pytest.raises(GatewayUnavailable):
        execute_job("job-1", settings, "w1", session=gateway)  # type: ignore[arg-type]
    assert "fail" not in gateway.actions()


def test_a_completion_the_gateway_already_has_is_not_completed_again(monkeypatch: pytest.MonkeyPatch,
                                                                     settings: Settings) -> None:
    _fake_kind(monkeypatch, _two_stages)
    gateway = FakeGateway(_job(), answers={"complete": lambda body: _Answer(409, {"state": "completed"})})
    assert execute_job("job-1", settings, "w1", session=gateway) == "completed"  # type: ignore[arg-type]
    assert gateway.actions().count("complete") == 1
    gateway = FakeGateway(_job(), answers={"complete": lambda body: _Answer(409, {"state": "not-owner"})})
    assert execute_job("job-1", settings, "w1", session=gateway) == "not-owner"  # type: ignore[arg-type]


def test_the_voxel_job_uses_the_registration_series_it_names(monkeypatch: pytest.MonkeyPatch,
                                                             settings: Settings) -> None:
    """``registrationSeriesUid`` reaches the pipeline: naming a series that is not a Spatial
    Registration fails the job saying so (without it the job would look for the study's REG)."""
    from services.dosimetry.imaging.phantom_variants import frame_change, moved_to_frame

    study = build_study(two_compartment_liver(n=12, voxel_mm=17.68), "PT", seed=4, with_seg=False)
    ct = moved_to_frame(study.ct, frame_change(np.eye(3), (10.0, 0.0, 0.0)), "1.2.826.0.1.3680043.8.498.7", "job")
    pacs = MemoryDicomweb([*study.activity, *ct])
    monkeypatch.setattr("services.dosimetry.imaging.dicomweb.make_client", lambda *a, **k: pacs)
    params = {"studyInstanceUid": study.study_uid, "administeredActivityGBq": 1.5, "method": "ldm",
              "registrationSeriesUid": str(ct[0].SeriesInstanceUID)}
    gateway = FakeGateway(_job(kind="voxel-dosimetry", params=params))
    assert tasks.execute_job("job-1", settings, "w1", session=gateway) == "failed"  # type: ignore[arg-type]
    failure = next(body for action, body in gateway.calls if action == "fail")
    assert f"series {ct[0].SeriesInstanceUID} is CT, not a Spatial Registration" in failure["reason"]


def test_the_voxel_job_hands_its_results_to_the_gateway(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """The real voxel job kind through the seam, on a PACS in memory."""
    study = build_study(two_compartment_liver(n=24, voxel_mm=8.84), "PT", seed=3)
    pacs = MemoryDicomweb(study.datasets())
    monkeypatch.setattr("services.dosimetry.imaging.dicomweb.make_client", lambda *a, **k: pacs)
    params = {"studyInstanceUid": study.study_uid, "administeredActivityGBq": 1.5, "method": "ldm",
              "segmentationSeriesUid": study.seg_series_uid, "patient": "Patient/p1"}
    gateway = FakeGateway(_job(kind="voxel-dosimetry", params=params))
    assert tasks.execute_job("job-1", settings, "w1", session=gateway) == "completed"  # type: ignore[arg-type]
    stages = [b["stage"] for a, b in gateway.calls if a == "progress"]
    # the pipeline's last stage, "done", is said by the completion itself (the gateway's finish);
    # stages begun within MIN_REPORT_INTERVAL_S of the last report are held (and this small job's
    # are then superseded by "store"), so those sent are the pipeline's, in order, first and store kept
    assert stages[0] == "fetch" and stages[-1] == "store"
    order = ["fetch", "decode", "resample", "dose", "dvh", "store"]
    assert [order.index(s) for s in stages] == sorted({order.index(s) for s in stages})
    assert gateway.actions()[-2:] == ["progress", "complete"]
    complete = gateway.calls[-1][1]
    types = [r["resourceType"] for r in complete["resources"]]
    assert types[0] == "DiagnosticReport" and types[-1] == "Provenance"
    assert set(types[1:-1]) == {"Observation"} and len(types) - 2 >= 3  # liver and both tumours at least
    written = {f"{r['resourceType']}/{r['id']}" for r in complete["resources"]}
    assert {o["reference"] for o in complete["outputs"]} == written - {
        f"Provenance/{complete['resources'][-1]['id']}"}
    assert set(complete["timings"]) >= {"fetch", "decode", "resample", "dose", "dvh", "store", "total"}
    assert len(pacs.stored) == 1  # the RT Dose


def test_a_lesion_look_up_from_another_thread_neither_waits_for_nor_takes_the_reports_answers() -> None:
    """A job looks its lesions up while its CT still arrives, from a look-up thread: the read
    answers while a progress report's answer is still held back, and that answer (here: the job
    was cancelled) is still acted on by the job's next report."""
    release = threading.Event()

    def slow_then_cancelled(body: dict[str, Any]) -> _Answer:
        assert release.wait(10)
        return _Answer(200, {"state": "cancelled"})

    gateway = FakeGateway(_job(), answers={
        "progress": slow_then_cancelled,
        "body-structure": lambda body: _Answer(200, {"reference": f"BodyStructure/{body['label']}"})})
    reporter = JobReporter(GATEWAY, TOKEN, "job-1", "w1", gateway)  # type: ignore[arg-type]
    try:
        reporter.progress("fetch", 0.0)  # on its way; its answer is held back
        found: list[str | None] = []
        looker = threading.Thread(target=lambda: found.append(reporter.body_structure("1.2.3", "lesion-a")))
        looker.start()
        looker.join(5)
        assert found == ["BodyStructure/lesion-a"] and not release.is_set()  # answered meanwhile
        release.set()
        with pytest.raises(JobCancelled):
            reporter.progress("store", 0.9)  # the held answer was left for the job's thread
    finally:
        release.set()
        reporter.close()


# -- reports at most one each min_interval_s ------------------------------------------------------

def _sent(gateway: FakeGateway) -> list[str]:
    return [b["stage"] for a, b in gateway.calls if a == "progress"]


def test_a_stage_begun_within_the_interval_is_held_and_the_latest_sent_when_it_is_up() -> None:
    gateway = FakeGateway(_job())
    reporter = JobReporter(GATEWAY, TOKEN, "job-1", "w1", gateway, min_interval_s=0.3)  # type: ignore[arg-type]
    try:
        reporter.progress("fetch", 0.0)
        reporter.progress("decode", 0.25)
        reporter.progress("resample", 0.4)
        assert _sent(gateway) == ["fetch"]  # the other two held
        for _ in range(100):  # the held one goes out once the interval is up (0.3 s)
            if len(_sent(gateway)) == 2:
                break
            threading.Event().wait(0.05)
        assert _sent(gateway) == ["fetch", "resample"]  # the latest; decode was replaced
    finally:
        reporter.close()


def test_reports_further_apart_than_the_interval_are_all_sent() -> None:
    gateway = FakeGateway(_job())
    reporter = JobReporter(GATEWAY, TOKEN, "job-1", "w1", gateway, min_interval_s=0.0)  # type: ignore[arg-type]
    try:
        for stage in ("fetch", "decode", "resample", "dose"):
            reporter.progress(stage, 0.5)
        reporter.progress("store", 0.9)
        assert _sent(gateway) == ["fetch", "decode", "resample", "dose", "store"]
    finally:
        reporter.close()


def test_the_store_and_the_completion_supersede_a_held_stage_without_waiting_for_the_interval() -> None:
    """A held stage is dropped, not sent late, when a synchronous stage or the completion follows;
    neither waits out the interval (here an hour)."""
    gateway = FakeGateway(_job())
    reporter = JobReporter(GATEWAY, TOKEN, "job-1", "w1", gateway, min_interval_s=3600.0)  # type: ignore[arg-type]
    done: list[str] = []

    def run() -> None:
        reporter.progress("fetch", 0.0)
        reporter.progress("dvh", 0.8)  # held
        reporter.progress("store", 0.9)
        reporter.progress("store", 0.95)  # synchronous stages are always sent
        reporter.progress("dose", 0.96)  # held
        done.append(reporter.complete([], []))

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(30)
    try:
        assert not worker.is_alive() and done == ["ok"]
        assert gateway.actions() == ["progress", "progress", "progress", "complete"]
        assert _sent(gateway) == ["fetch", "store", "store"]
    finally:
        reporter.close()


def test_a_cancellation_answered_to_a_held_stage_stops_the_job_at_its_next_report() -> None:
    gateway = FakeGateway(_job(), answers={"progress": lambda body: _Answer(
        200, {"state": "cancelled" if body["stage"] == "decode" else "ok"})})
    reporter = JobReporter(GATEWAY, TOKEN, "job-1", "w1", gateway, min_interval_s=0.1)  # type: ignore[arg-type]
    try:
        reporter.progress("fetch", 0.0)
        reporter.progress("decode", 0.25)  # held, sent 0.1 s later and answered "cancelled"
        for _ in range(100):
            if len(_sent(gateway)) == 2:
                break
            threading.Event().wait(0.05)
        with pytest.raises(JobCancelled):
            reporter.progress("store", 0.9)  # waits for that answer before the job writes
        assert _sent(gateway) == ["fetch", "decode"]
    finally:
        reporter.close()
