"""The tumour-board page (contract "For people"): ``/app/`` and ``/app/patient/{id}``.

Server-rendered HTML (Jinja2), no JavaScript: a person finds a patient, then reads the whole
case on one page (eligibility, SIRT plan, dosimetry, response course, markers, CTCAE grades)
with every figure served as PNG beside a table of its numbers. The page reads the same FHIR
store the REST API serves and computes no result of its own (:mod:`netliver.report`).

Authentication: with ``AUTH_MODE=off`` the page is open (loopback only, like the API). With
``AUTH_MODE=jwt`` every view needs a bearer token whose scopes cover reading the patient's
resources, exactly as the REST API does: the ``Authorization`` header, or the token a SMART
app launch (:mod:`gateway.webapp.smart`) kept in the page's session.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from gateway.auth import LAUNCH_PATHS, require_scopes
from gateway.compartment import outside
from gateway.webapp.dose_map import DoseImages, DoseMapSource, DoseMapUnavailable
from gateway.webapp.smart import add_launch_views, launch_configured
from netliver.fhir.outcome import FhirError
from netliver.report.case import STATUS_LABELS
from netliver.report.fetch import CASE_SEARCHES, load_case
from netliver.settings import Settings
from netliver.web import error_response

__all__ = ["DICOMWEB_EXTENSION", "PAGE_READS", "StoreReader", "create_webapp_blueprint", "warm_up_plotting"]

#: ``app.extensions`` key of a DICOMweb client to use instead of one built from ``DICOMWEB_URL``.
DICOMWEB_EXTENSION = "netliver.dicomweb"

#: Resource types the page reads (the scopes a caller needs in jwt mode).
PAGE_READS = ("Patient", *(t for t, _ in CASE_SEARCHES))
_SEARCH_LIMIT = 200


def warm_up_plotting() -> None:
    """Import the plotting stack (matplotlib, seconds on a busy machine) in the background, so
    a gateway process answers at once and the first figure or presentedForm finds it loaded.
    The views and the write-back import it where they use it (waiting for this import if it is
    still under way)."""
    def load() -> None:
        for module in ("netliver.report.presented", "netliver.report.dose_map", "dicomweb_client.api"):
            importlib.import_module(module)  # the dose map's reader and client too (seconds when loaded)

    threading.Thread(target=load, name="warm-up-plotting", daemon=True).start()


class StoreReader:
    """The gateway's FHIR store seen through the reader interface of :mod:`netliver.report`."""

    def __init__(self, store: Any, base_url: str) -> None:
        self.store, self.base_url = store, base_url

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.store.read(resource_type, resource_id)
        return found

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        found: dict[str, Any] = self.store.search(resource_type, params, self.base_url)
        return found


def _patient_rows(store: Any, base_url: str, query: str, only: str | None = None) -> list[dict[str, str]]:
    """Patients whose id or name contains ``query`` (case-insensitive), at most 200; ``only``
    that patient."""
    page = store.search("Patient", [("_count", str(_SEARCH_LIMIT)), *([("_id", only)] if only else [])], base_url)
    rows = []
    for entry in page.get("entry") or []:
        res = entry.get("resource") or {}
        name = res.get("name") or [{}]
        text = name[0].get("text") or " ".join([*name[0].get("given", []), name[0].get("family", "")]).strip()
        row = {"id": str(res.get("id", "")), "name": text, "birthDate": str(res.get("birthDate", "")),
               "gender": str(res.get("gender", ""))}
        if not query or query.lower() in f"{row['id']} {row['name']}".lower():
            rows.append(row)
    return sorted(rows, key=lambda r: r["id"])


def create_webapp_blueprint(get_store: Callable[[], Any], base_url_of: Callable[[], str],
                            settings: Settings | None = None) -> Blueprint:
    bp = Blueprint("webapp", __name__, url_prefix="/app", template_folder="templates",
                   static_folder="static", static_url_path="/static")
    bp.record_once(lambda _state: warm_up_plotting())
    if settings is not None:
        _add_launch(bp, settings, base_url_of)
    pages = _Pages(get_store, base_url_of, settings or Settings())
    _add_page_views(bp, pages)
    _add_file_views(bp, pages)
    return bp


def _add_launch(bp: Blueprint, settings: Settings, base_url_of: Callable[[], str]) -> None:
    """The SMART launch views, the session cookie's settings, and the browser's way to the login."""
    add_launch_views(bp, settings, base_url_of)
    if settings.app_session_secret:
        bp.record_once(lambda state: state.app.config.update(
            SECRET_KEY=settings.app_session_secret, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
            SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://")))
    if launch_configured(settings):

        @bp.errorhandler(FhirError)
        def login_first(err: FhirError) -> WerkzeugResponse:
            """A browser without a token is sent to the standalone launch; others get the outcome."""
            if err.status == 401 and request.accept_mimetypes.accept_html and request.path not in LAUNCH_PATHS:
                return redirect(url_for("webapp.login"), code=302)
            return error_response(err)


class _Pages:
    """What the page's views share: the store, the base URL, and the dose maps' images."""

    def __init__(self, get_store: Callable[[], Any], base_url_of: Callable[[], str], settings: Settings) -> None:
        self.get_store, self.base_url_of = get_store, base_url_of
        self.maps = DoseMapSource(settings, client=lambda: current_app.extensions.get(DICOMWEB_EXTENSION)
                                  or self.maps.dicomweb())

    def reader(self) -> StoreReader:
        return StoreReader(self.get_store(), self.base_url_of())

    @staticmethod
    def may_read(patient_id: str) -> None:
        """403 unless the caller may read this patient's case (``patient/`` scopes: only its own)."""
        confined = require_scopes(read=PAGE_READS, compartment=True)
        if confined not in (None, patient_id):
            raise outside(f"Patient/{patient_id} is not the patient of this launch (Patient/{confined})")

    def dose_map(self, report_ref: str, wanted: str | None, *, with_ct: bool) -> dict[str, Any]:
        """The dose map of a voxel report: its images' slice ``wanted`` (1-based; the slice of the
        highest dose by default), or the reason there is none. The page needs the RT Dose and
        the SEG; only the figure needs the CT (``with_ct``: the one instance nearest the slice)."""
        try:
            report = self.get_store().read(*report_ref.split("/", 1))
            study_uid, sop_uid = self.maps.locate(self.get_store(), self.base_url_of(), report)
            images = self.maps.images(study_uid, sop_uid)
        except DoseMapUnavailable as err:
            return {"error": str(err)}
        count = len(images.volume.z_mm)
        index, note = images.volume.peak_index, ""
        if wanted:
            if wanted.isdigit() and 1 <= int(wanted) <= count:
                index = int(wanted) - 1
            else:
                note = f"slice {wanted!r} is not between 1 and {count}: the slice of the highest dose is shown"
        if with_ct:
            try:
                ct = self.maps.ct_near(study_uid, images.volume, float(images.volume.z_mm[index]))
            except DoseMapUnavailable as err:
                return {"error": str(err)}
            images = DoseImages(images.volume, ct, images.seg)
        from netliver.report.dose_map import dose_map_figure, dose_slice

        spec = dose_map_figure(images.volume, index, images.ct, images.seg, "dose-map", "Dose map")
        return {"images": images, "slice": dose_slice(images.volume, index, images.ct, images.seg),
                "alt": spec.alt, "spec": spec, "note": note}


def _add_page_views(bp: Blueprint, pages: _Pages) -> None:
    """The patient list and the patient's page."""

    @bp.get("/")
    def find_patient() -> str:
        confined = require_scopes(read=("Patient",), compartment=True)
        query = request.args.get("q", "").strip()
        rows = _patient_rows(pages.get_store(), pages.base_url_of(), query, only=confined)
        return render_template("webapp/find.html", rows=rows, query=query)

    @bp.get("/patient/<patient_id>")
    def patient_page(patient_id: str) -> str:
        pages.may_read(patient_id)
        case = load_case(pages.reader(), patient_id)
        from netliver.report.plots import figure_specs

        slices = {k: v for k, v in request.args.items() if k.startswith("slice")}
        dose_maps = {i: pages.dose_map(r.resource, request.args.get(f"slice{i}"), with_ct=False)
                     for i, r in enumerate(case.doses, start=1)}
        return render_template("webapp/patient.html", case=case, figures={s.name: s for s in figure_specs(case)},
                               statuses=STATUS_LABELS, dose_maps=dose_maps, slices=slices)


def _add_file_views(bp: Blueprint, pages: _Pages) -> None:
    """The page's figures, dose maps and PDF."""

    @bp.get("/patient/<patient_id>/dose-map/<int:number>.png")
    def dose_map_png(patient_id: str, number: int) -> Response:
        """Voxel report ``number``'s dose map (``?slice=`` 1-based; the slice of the highest dose by default)."""
        pages.may_read(patient_id)
        doses = load_case(pages.reader(), patient_id).doses
        if not 1 <= number <= len(doses):
            raise FhirError(404, "not-found", f"patient {patient_id} has no voxel report {number}", "number")
        found = pages.dose_map(doses[number - 1].resource, request.args.get("slice"), with_ct=True)
        if "error" in found:
            raise FhirError(404, "not-found", f"no dose map for {doses[number - 1].resource}: {found['error']}")
        if found["note"]:
            raise FhirError(400, "value", found["note"].split(":")[0], "slice")
        return Response(found["spec"].draw(), mimetype="image/png", headers={"Cache-Control": "no-store"})

    @bp.get("/patient/<patient_id>/figure/<name>.png")
    def figure(patient_id: str, name: str) -> Response:
        pages.may_read(patient_id)
        from netliver.report.plots import render

        figure = render(load_case(pages.reader(), patient_id), name)
        if figure is None:
            raise FhirError(404, "not-found", f"patient {patient_id} has no figure {name!r}", "name")
        return Response(figure.png, mimetype="image/png", headers={"Cache-Control": "no-store"})

    @bp.get("/patient/<patient_id>/report.pdf")
    def report_pdf(patient_id: str) -> Response:
        pages.may_read(patient_id)
        from netliver.report.pdf import case_pdf

        pdf = case_pdf(load_case(pages.reader(), patient_id))
        return Response(pdf, mimetype="application/pdf", headers={
            "Cache-Control": "no-store", "Content-Disposition": f'inline; filename="tumour-board-{patient_id}.pdf"'})
