"""PACS trigger: ``POST /hooks/orthanc/stable-study`` and the ``/changes`` catch-up.

Orthanc's ``OnStableStudy`` Lua callback (``infra/orthanc/netliver.lua``) posts ``{"ID": ...}``.
The gateway resolves the study through Orthanc's REST API, records an ``ImagingStudy`` with an
``endpoint`` to the DICOMweb service, and, when the study is a dosimetry study (Y-90 PET, Y-90
bremsstrahlung SPECT, Tc-99m MAA SPECT, by the rules the dosimetry worker applies too:
:mod:`netliver.dosimetry_contract`), starts the voxel-dosimetry job. Ids are derived from
the StudyInstanceUID and the job from its parameters, so the same study posted twice runs once.
A notification Orthanc failed to deliver is caught up from ``/changes`` (``StableStudy``
entries) with a cursor kept in the database.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
import sqlalchemy as sa
from flask import Blueprint, Response, request

from gateway.auth import require_hook_auth, require_internal_token
from gateway.fhir_interactions import prefers_async
from gateway.scope_registry import ORTHANC_HOOK
from gateway.writeback import write_results
from netliver import sessions
from netliver.dosimetry_contract import COMPLETENESS_ATTRIBUTES, classify_study, missing_instances
from netliver.fhir.builders import deterministic_id, imaging_study_id
from netliver.fhir.codesystems import OBSERVATION_CODE_SYSTEM
from netliver.fhir.outcome import FhirError
from netliver.pacs_ids import is_dicom_uid, is_orthanc_id, url_segment
from netliver.settings import Settings
from netliver.web import fhir_response

if TYPE_CHECKING:
    from gateway.deps import GatewayDeps

__all__ = ["StudyInfo", "classify_study", "create_hooks_blueprint"]

_log = logging.getLogger("netliver.gateway.hooks")

DICOM_PATIENT_ID_SYSTEM = "urn:netliver:dicom-patient-id"
#: What the hook reads and writes (the registry's row, also the documentation's): a JWT caller
#: needs scopes for all.
HOOK_READS, HOOK_WRITES = ORTHANC_HOOK.reads, ORTHANC_HOOK.writes


@dataclass(frozen=True)
class StudyInfo:
    orthanc_id: str
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    description: str
    series: list[dict[str, Any]]
    kind: str  # y90-pet | y90-spect | maa-spect | none
    activity_gbq: float | None  # administered Y-90 activity found in the DICOM header
    reason: str


def checked_orthanc_id(value: object) -> str:
    """``value`` if it is an Orthanc study id, else 400 naming ``ID`` (never put into a URL)."""
    if not is_orthanc_id(value):
        raise FhirError(400, "value", "ID is not an Orthanc id (five groups of 8 lower-case hex digits "
                        "joined by '-')", "ID")
    return str(value)


class OrthancClient:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.orthanc_url.rstrip("/")
        self.session = sessions.session()
        if settings.orthanc_user:
            self.session.auth = (settings.orthanc_user, settings.orthanc_password)

    def get(self, *segments: str, **params: Any) -> Any:
        """GET ``/{segments...}``: every segment is an Orthanc id or a fixed word, and quoted."""
        path = "/".join(url_segment(s) for s in segments)
        try:
            resp = self.session.get(f"{self.url}/{path}", params=params or None, timeout=15)
        except requests.RequestException as exc:
            raise FhirError(503, "transient", "the PACS (Orthanc) is unreachable",
                            headers={"Retry-After": "30"}) from exc
        if resp.status_code == 404:
            raise FhirError(404, "not-found", f"Orthanc has no {path}", "ID")
        if resp.status_code != 200:
            raise FhirError(503, "transient", f"Orthanc answered {resp.status_code} for {path}",
                            headers={"Retry-After": "30"})
        try:
            return resp.json()
        except ValueError:
            raise FhirError(503, "transient", f"Orthanc answered {path} with something other than JSON",
                            headers={"Retry-After": "30"}) from None

    def child(self, kind: str, orthanc_id: object, *rest: str, **params: Any) -> Any:
        """GET ``/{kind}/{id}/...`` for an id Orthanc itself listed (checked all the same)."""
        if not is_orthanc_id(orthanc_id):
            raise FhirError(503, "transient", f"Orthanc listed a {kind} id that is not an Orthanc id",
                            headers={"Retry-After": "30"})
        return self.get(kind, str(orthanc_id), *rest, **params)

    def study(self, orthanc_id: str) -> StudyInfo:
        study = self.get("studies", checked_orthanc_id(orthanc_id))
        tags = study.get("MainDicomTags", {})
        ptags = study.get("PatientMainDicomTags", {})
        series = []
        for series_id in study.get("Series", []):
            s = self.child("series", series_id)
            stags = s.get("MainDicomTags", {})
            summary: dict[str, Any] = {"uid": stags.get("SeriesInstanceUID", ""),
                                       "modality": stags.get("Modality", ""),
                                       "description": stags.get("SeriesDescription", ""),
                                       "number": stags.get("SeriesNumber"),
                                       "instances": len(s.get("Instances", [])),
                                       "radiopharmaceutical": None, "header": {}}
            if summary["modality"] in {"PT", "NM"} and s.get("Instances"):
                inst = self.child("instances", s["Instances"][0], "tags", simplify="")
                summary["header"] = {k: inst[k] for k in COMPLETENESS_ATTRIBUTES if k in inst}
                seq = inst.get("RadiopharmaceuticalInformationSequence") or []
                if seq and isinstance(seq, list) and isinstance(seq[0], dict):
                    # Its attributes and the radionuclide code: what the worker reads as well.
                    summary["radiopharmaceutical"] = {k: v for k, v in seq[0].items() if not isinstance(v, list)
                                                      or k == "RadionuclideCodeSequence"}
            series.append(summary)
        kind, activity, reason = classify_study(series)
        return StudyInfo(orthanc_id=orthanc_id, study_uid=tags.get("StudyInstanceUID", ""),
                         patient_id=ptags.get("PatientID", ""), patient_name=ptags.get("PatientName", ""),
                         study_date=tags.get("StudyDate", ""), description=tags.get("StudyDescription", ""),
                         series=series, kind=kind, activity_gbq=activity, reason=reason)


def _imaging_resources(info: StudyInfo, settings: Settings, patient_ref: dict[str, Any]) -> list[dict[str, Any]]:
    endpoint_id = deterministic_id("endpoint", "dicomweb", settings.dicomweb_url)
    endpoint = {
        "resourceType": "Endpoint", "id": endpoint_id, "status": "active",
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "dicom-wado-rs"},
        "name": "netliver PACS DICOMweb",
        "payloadType": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
                                     "code": "DICOM"}]}],
        "payloadMimeType": ["application/dicom"],
        "address": settings.dicomweb_url,
    }
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": imaging_study_id(info.study_uid),
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{info.study_uid}"}],
        "status": "available",
        "subject": patient_ref,
        "endpoint": [{"reference": f"Endpoint/{endpoint_id}"}],
        "numberOfSeries": len(info.series),
        "numberOfInstances": sum(int(s.get("instances") or 0) for s in info.series),
        "series": [{
            "uid": s["uid"],
            "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": s["modality"]},
            "numberOfInstances": int(s.get("instances") or 0),
            **({"description": s["description"]} if s.get("description") else {}),
        } for s in info.series if s.get("uid") and s.get("modality")],
    }
    if info.description:
        study["description"] = info.description
    if len(info.study_date) == 8 and info.study_date.isdigit():
        d = info.study_date
        study["started"] = f"{d[:4]}-{d[4:6]}-{d[6:]}"
    return [endpoint, study]


def _still_arriving(info: StudyInfo) -> str | None:
    """Why the study's emission series is not complete yet (:func:`missing_instances`), or None."""
    for s in info.series:
        why = missing_instances(str(s.get("modality", "")), int(s.get("instances") or 0), s.get("header") or {})
        if why:
            return f"series {s.get('uid')}: {why}"
    return None


class CatchUpCursor:
    """The last Orthanc change sequence handled, kept in the gateway's database."""

    def __init__(self, engine: sa.Engine, metadata: sa.MetaData) -> None:
        self.engine = engine
        self.table = sa.Table("netliver_orthanc_cursor", metadata,
                              sa.Column("name", sa.String(64), primary_key=True),
                              sa.Column("seq", sa.BigInteger, nullable=False), extend_existing=True)

    def get(self) -> int:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.table.c.seq).where(self.table.c.name == "orthanc")).first()
        return int(row[0]) if row else 0

    def advance(self, old: int, new: int) -> bool:
        """Move the cursor from ``old`` to ``new``; False if someone else moved it first."""
        try:
            with self.engine.begin() as conn:
                if old == 0 and self._missing(conn):
                    conn.execute(self.table.insert().values(name="orthanc", seq=new))
                    return True
                res = conn.execute(self.table.update().where(self.table.c.name == "orthanc")
                                   .where(self.table.c.seq == old).values(seq=new))
                return bool(res.rowcount == 1)
        except sa.exc.IntegrityError:
            return False  # another gateway process created the cursor row first

    def _missing(self, conn: sa.Connection) -> bool:
        return conn.execute(sa.select(self.table.c.seq).where(self.table.c.name == "orthanc")).first() is None


class StableStudyHandler:
    """Records a stable study and starts its dosimetry job; catches up missed notifications.
    The cursor table joins ``deps.database``'s metadata (created by the composition root)."""

    def __init__(self, deps: GatewayDeps, orthanc: OrthancClient | None = None) -> None:
        self.deps, self.settings = deps, deps.settings
        self.orthanc = orthanc or OrthancClient(deps.settings)
        self.cursor = CatchUpCursor(deps.database.engine, deps.database.metadata)

    def _patient_ref(self, info: StudyInfo) -> dict[str, Any]:
        store = self.deps.store
        if info.patient_id:
            found = store.search("Patient", [("identifier", info.patient_id), ("_count", "2")], self.deps.fhir_base())
            entries = found.get("entry", [])
            if len(entries) == 1:
                return {"reference": f"Patient/{entries[0]['resource']['id']}"}
        return {"identifier": {"system": DICOM_PATIENT_ID_SYSTEM, "value": info.patient_id or "unknown"},
                **({"display": info.patient_name} if info.patient_name else {})}

    def _planned_activity(self, patient_ref: dict[str, Any]) -> float | None:
        """The newest planned Y-90 activity (``$sirt-activity`` result) of the patient, for MAA studies."""
        ref = patient_ref.get("reference")
        if not ref:
            return None
        found = self.deps.store.search("Observation", [
            ("subject", ref), ("code", f"{OBSERVATION_CODE_SYSTEM}|sirt-activity-plan"),
            ("_sort", "-_lastUpdated"), ("_count", "1")], self.deps.fhir_base())
        for entry in found.get("entry", []):
            res = entry.get("resource", {})
            for comp in res.get("component", []):
                codes = {c.get("code") for c in comp.get("code", {}).get("coding", [])}
                if codes & {"activityGBq", "activity-gbq", "activity"} and "valueQuantity" in comp:
                    return float(comp["valueQuantity"]["value"])
            if "valueQuantity" in res:
                return float(res["valueQuantity"]["value"])
        return None

    def handle(self, orthanc_id: str) -> dict[str, Any]:
        info = self.orthanc.study(orthanc_id)
        if not is_dicom_uid(info.study_uid):
            raise FhirError(422, "invalid", "the Orthanc study has no valid StudyInstanceUID", "ID")
        patient_ref = self._patient_ref(info)
        resources = _imaging_resources(info, self.settings, patient_ref)
        write_results(self.deps.store, resources, self.deps.fhir_base())
        study_ref = f"ImagingStudy/{resources[1]['id']}"
        result: dict[str, Any] = {"imagingStudy": study_ref, "kind": info.kind, "reason": info.reason}
        if info.kind == "none":
            return result
        arriving = _still_arriving(info)
        if arriving:
            # Orthanc calls a study stable after StableAge seconds without a new instance, which
            # a paused upload also gives: no job on part of a series. The PACS notifies the
            # study again once the rest has arrived (and the catch-up reads that notification).
            result.update({"job": None, "reason": f"{info.reason}; {arriving}: the dosimetry job starts once the "
                           "series is complete"})
            return result
        activity = info.activity_gbq if info.kind != "maa-spect" else self._planned_activity(patient_ref)
        if activity is None or activity <= 0:
            result["job"] = None
            result["reason"] = (f"{info.reason}; no administered/planned Y-90 activity is known, so no job "
                                "was started (record a $sirt-activity plan for the patient)")
            return result
        params: dict[str, Any] = {"studyInstanceUid": info.study_uid, "administeredActivityGBq": round(activity, 6),
                                  "method": "ldm"}
        if "reference" in patient_ref:
            params["patient"] = patient_ref["reference"]
        params["imagingStudy"] = study_ref
        segmentation = [s["uid"] for s in info.series
                        if s.get("modality") in {"SEG", "RTSTRUCT"} and is_dicom_uid(s.get("uid"))]
        if len(segmentation) == 1:
            params["segmentationSeriesUid"] = segmentation[0]
        elif len(segmentation) > 1:
            result["warning"] = "several SEG/RTSTRUCT series: none was chosen, the automatic liver VOI is used"
        # The same study is the same job even if its patient was registered in between (the
        # hook and the catch-up may both handle it): the patient reference is not part of its id.
        identity = {k: v for k, v in params.items() if k not in {"patient", "imagingStudy"}}
        job, sent = self.deps.jobs.submit("voxel-dosimetry", params, identity)
        result.update({"job": f"Task/{job.id}", "started": sent})
        return result

    def catch_up(self, limit: int = 100) -> dict[str, Any]:
        handled, errors = [], []
        since = self.cursor.get()
        while True:
            changes = self.orthanc.get("changes", since=since, limit=limit)
            if not isinstance(changes, dict):
                raise FhirError(503, "transient", "Orthanc's /changes answer is not a JSON object",
                                headers={"Retry-After": "30"})
            for change in changes.get("Changes", []):
                if change.get("ChangeType") == "StableStudy":
                    try:
                        handled.append(self.handle(change["ID"]))
                    except FhirError as err:
                        errors.append({"ID": change.get("ID"), "error": err.diagnostics})
                        if err.status >= 500:
                            return {"handled": handled, "errors": errors, "cursor": since}
            last = int(changes.get("Last", since))
            if last > since and not self.cursor.advance(since, last):
                break  # another gateway process advanced it
            since = max(since, last)
            if changes.get("Done", True):
                break
        return {"handled": handled, "errors": errors, "cursor": since}


def _start_catch_up_thread(handler: StableStudyHandler, every_s: float, app: Any) -> None:
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                with app.test_request_context(base_url=handler.settings.base_url):
                    handler.catch_up()
            except Exception as exc:  # keep polling; the PACS may be down for a while
                _log.warning("orthanc catch-up failed", extra={"error": str(exc)})

    threading.Thread(target=loop, name="orthanc-catch-up", daemon=True).start()


def _handle_later(handler: StableStudyHandler, orthanc_id: str, app: Any) -> None:
    """A notification accepted with ``Prefer: respond-async``, handled after its answer; a
    failure is logged (the ``/changes`` catch-up handles every stable study again)."""
    try:
        with app.test_request_context(base_url=handler.settings.base_url):
            handler.handle(orthanc_id)
    except Exception as exc:  # a thread of its own: nothing else would see it
        _log.warning("stable-study notification failed", extra={"orthanc_id": orthanc_id, "error": str(exc)})


def create_hooks_blueprint(deps: GatewayDeps) -> Blueprint:
    """The PACS hook views; the cursor table is added to ``deps.database``'s metadata."""
    bp = Blueprint("hooks", __name__)
    settings = deps.settings
    handler = StableStudyHandler(deps)
    # notifications accepted asynchronously, handled one at a time in the order they came
    later = ThreadPoolExecutor(1, thread_name_prefix="stable-study")
    registered: dict[str, Any] = {}

    @bp.record_once
    def _on_register(state: Any) -> None:
        registered["app"] = state.app
        if settings.orthanc_catch_up_s > 0:
            _start_catch_up_thread(handler, settings.orthanc_catch_up_s, state.app)

    @bp.post("/hooks/orthanc/stable-study")
    def stable_study() -> Response:
        require_hook_auth(read=HOOK_READS, write=HOOK_WRITES)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise FhirError(400, "invalid", 'expected a JSON body {"ID": "<orthanc study id>"}')
        study_id = body.get("ID")
        if not isinstance(study_id, str) or not study_id.strip():
            raise FhirError(422, "required", "ID (the Orthanc study id) is required", "ID")
        orthanc_id = checked_orthanc_id(study_id.strip())
        if prefers_async(request.headers.get("Prefer")):
            # Orthanc's Lua HttpPost holds the Lua lock, which Orthanc takes for the REST requests
            # the study is resolved with: answered at once, the study is handled after the answer.
            later.submit(_handle_later, handler, orthanc_id, registered["app"])
            return fhir_response({"ID": orthanc_id, "accepted": True}, 202)
        result = handler.handle(orthanc_id)
        return fhir_response(result, 202 if result.get("job") else 200)

    @bp.post("/hooks/orthanc/catch-up")
    def catch_up() -> Response:
        require_internal_token()
        return fhir_response(handler.catch_up())

    return bp
