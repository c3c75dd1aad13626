"""``make demo``: one synthetic patient through every operation, on a stack started here.

Starts the stack on its embedded defaults (SQLite store, the machine's Redis or one started for
the demo, a local Orthanc PACS when installed), then:

1. stores the patient's record (about 60 resources) in the FHIR store;
2. ``POST /fhir/Patient/{id}/$evaluate-eligibility`` — 13 therapies, with reasons and gaps;
3. CDS Hooks ``patient-view`` — the cards an EHR would show;
4. ``POST /fhir/$sirt-activity`` — a partition-model plan;
5. a Tc-99m MAA SPECT/CT (the simulation of the plan) and then the post-SIRT Y-90 PET/CT arrive
   in the PACS → Orthanc's stable-study hook → voxel dosimetry jobs on a Celery worker (``202`` +
   ``Task``) → DiagnosticReports with dose and BED per VOI, Observations, RT Dose; then
   ``POST /fhir/$dose-comparison`` (did the MAA predict what the PET showed?) and a second
   ``$sirt-activity`` for the patient (prior lung dose from the store, cumulative limit). Each
   study's CT and SEG go to the PACS before its emission series, and the demo waits for the
   job that read the study with its SEG;
6. ``POST /fhir/$tumor-response`` — RECIST 1.1 over three follow-ups, with each segmented
   lesion's dose and BED beside its response (the SEG's lesion segments are linked to the
   follow-up's BodyStructures by label);

prints the four answers across treatments (predicted vs delivered, prior lung dose, BED/EQD2
per VOI, dose-response per lesion), a summary with the ids of the written resources, and stops
everything it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import requests

from infra.stack import ROOT, Stack, StackConfig, free_port

__all__ = ["main"]

PATIENT_ID = "demo-nen-1"
DICOM_PATIENT_ID = "NETLIVER-DEMO-0001"
#: Criteria evaluated besides RECIST 1.1, so the page shows a table per criterion.
EXTRA_CRITERIA = ("mrecist", "choi", "percist")
FIGURES_DIR = ROOT / "var" / "demo" / "figures"
#: The lesion segments of the demo's SEGs: three are the follow-up's lesions (BodyStructure ids),
#: the fourth was never measured on the follow-up CTs.
DEMO_LESIONS = ("L1", "L2", "NT1", "lesion 4")


def for_patient(bundle: dict[str, Any], patient_id: str, prefix: str = "") -> dict[str, Any]:
    """``bundle`` about ``patient_id``: every subject/patient reference points to it and every
    resource id gets ``prefix`` (references between the resources follow). The demo needs no
    prefix: the patient's own record uses ids that start with the patient's id."""
    ids = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            ref = out.get("reference")
            if isinstance(ref, str):
                kind, _, rid = ref.partition("/")
                if kind == "Patient":
                    out["reference"] = f"Patient/{patient_id}"
                elif ref in ids:
                    out["reference"] = f"{kind}/{prefix}{rid}"
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    entries = []
    for entry in bundle["entry"]:
        res = walk(entry["resource"])
        res["id"] = prefix + res["id"]
        base = str(entry.get("fullUrl", "")).rsplit("/", 2)[0] or "https://ehr.example/fhir"
        entries.append({"fullUrl": f"{base}/{res['resourceType']}/{res['id']}", "resource": res})
    return {**bundle, "entry": entries}


def _port(preferred: int) -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def _post(url: str, body: Any, **kw: Any) -> requests.Response:
    resp = requests.post(url, json=body, timeout=120, **kw)
    if resp.status_code >= 400:
        raise SystemExit(f"demo step failed: POST {url} → {resp.status_code}\n{resp.text[:2000]}")
    return resp


def _as_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = []
    for entry in bundle.get("entry", []):
        res = entry["resource"]
        entries.append({"resource": res, "request": {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _line(text: str = "") -> None:
    print(text, flush=True)


def _status(obs: dict[str, Any]) -> tuple[str, str]:
    therapy = obs["code"]["coding"][0]["code"]
    status = next(c["code"] for c in obs["valueCodeableConcept"]["coding"])
    return therapy, status


def run(stack: Stack, with_pacs: bool) -> dict[str, list[str]]:
    """Steps 1-6 on ``stack``; the references written, by operation."""
    gw = f"{stack.gateway_url}/fhir"
    written: dict[str, list[str]] = {}
    answers: dict[str, list[str]] = {}
    follow_up = _store_record(gw)
    written["eligibility"] = _eligibility(gw)
    _cds_cards(stack.gateway_url)
    plan = _post(f"{gw}/$sirt-activity", _plan_parameters("partition", "resin", "2024-03-05T09:30:00Z", {
        "liverVolumeMl": 1800, "tumorVolumeMl": 300, "lungShuntFraction": 0.07, "tumorToNormalRatio": 4,
        "targetDoseGy": 120, "normalLiverLimitGy": 40})).json()
    values = _outputs(plan)
    _line(f"4. SIRT plan (partition model): {values.get('activityGBq')} GBq, tumour {values.get('tumorDoseGy')} Gy, "
          f"normal liver {values.get('normalLiverDoseGy')} Gy, lung {values.get('lungDoseGy')} Gy, "
          f"limited by {values.get('limitingFactor')}, status {values.get('status')}")
    if with_pacs:
        _across_treatments(stack, gw, written, answers)
    else:
        _line("5. Voxel dosimetry skipped: Orthanc is not installed (make system-deps installs it).")
    _tumour_response(gw, follow_up, written, answers)
    _line("\nAcross treatments, the four questions:")
    for question, lines in sorted(answers.items()):
        _line(f"  {question}")
        for text in lines:
            _line(f"     {text}")
    return written


def _store_record(gw: str) -> dict[str, Any]:
    """Step 1: the patient's record and its lesions' BodyStructures (before the PACS jobs: they
    link each segmented lesion to its BodyStructure); the follow-up itself comes in step 6."""
    from infra.demo_follow_up import synthetic_follow_up_bundle
    from infra.demo_patients import realistic_patient

    record = realistic_patient(PATIENT_ID)
    patient = next(e["resource"] for e in record["entry"] if e["resource"]["resourceType"] == "Patient")
    patient.setdefault("identifier", []).append({"system": "urn:netliver:dicom-patient-id", "value": DICOM_PATIENT_ID})
    _post(gw, _as_transaction(record))
    follow_up = for_patient(synthetic_follow_up_bundle(), PATIENT_ID)
    lesions = [e for e in follow_up["entry"] if e["resource"]["resourceType"] == "BodyStructure"]
    _post(gw, _as_transaction({"entry": lesions}))
    _line(f"1. Stored the record of Patient/{PATIENT_ID}: {len(record['entry'])} resources, and its "
          f"{len(lesions)} lesions (BodyStructure).")
    return follow_up


def _eligibility(gw: str) -> list[str]:
    """Step 2: the 13 therapies with the rules that decided each."""
    t0 = time.perf_counter()
    result = _post(f"{gw}/Patient/{PATIENT_ID}/$evaluate-eligibility", None).json()
    observations = [e["resource"] for e in result["entry"] if e["resource"]["resourceType"] == "Observation"
                    and e["resource"]["code"]["coding"][0]["system"].endswith("/therapy")]
    _line(f"2. Eligibility ({(time.perf_counter() - t0) * 1000:.0f} ms): {len(observations)} therapies")
    deciding = {"ineligible": ("absolute · met", "indication · not-met"),
                "eligible-with-caution": ("relative · met", "warning · met"),
                "insufficient-data": ("unknown",)}
    for obs in observations:
        therapy, status = _status(obs)
        why = [n["text"].split("]")[0].lstrip("[").split(" · ")[0] for n in obs.get("note", [])
               if any(k in n["text"].split("]")[0] for k in deciding.get(status, ()))]
        _line(f"     {therapy:<20} {status:<22} {', '.join(why[:3])}")
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in result["entry"]]


def _cds_cards(gateway_url: str) -> None:
    cards = _post(f"{gateway_url}/cds-services/liver-directed-therapy", {
        "hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/demo", "patientId": PATIENT_ID}}).json()["cards"]
    _line(f"3. CDS Hooks patient-view: {len(cards)} card(s)")
    for card in cards[:4]:
        _line(f"     [{card.get('indicator')}] {card.get('summary')}")


def _plan_parameters(method: str, device: str, when: str, numbers: dict[str, float]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "method", "valueCode": method}, {"name": "device", "valueCode": device},
        *({"name": k, "valueDecimal": v} for k, v in numbers.items()),
        {"name": "patient", "valueReference": {"reference": f"Patient/{PATIENT_ID}"}},
        {"name": "treatmentTime", "valueDateTime": when}]}


def _outputs(parameters: dict[str, Any]) -> dict[str, Any]:
    return {p["name"]: next((v for k, v in p.items() if k.startswith("value")), None)
            for p in parameters["parameter"]}


def _tumour_response(gw: str, follow_up: dict[str, Any], written: dict[str, list[str]],
                     answers: dict[str, list[str]]) -> None:
    """Step 6: RECIST 1.1 over the follow-ups (and the other criteria, for the page); each
    segmented lesion's dose beside its response."""
    _post(gw, _as_transaction(follow_up))  # the images' measurements and markers, for the page
    for criteria in EXTRA_CRITERIA:
        _post(f"{gw}/$tumor-response?criteria={criteria}", follow_up)
    response = _post(f"{gw}/$tumor-response?criteria=recist-1.1", follow_up).json()
    _line(f"6. RECIST 1.1 (also written: {', '.join(EXTRA_CRITERIA)}):")
    for entry in response["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "DiagnosticReport" and res["code"]["coding"][0]["code"] == "dose-response-report":
            answers["4. Which lesions got which dose, and did they respond?"] = res["conclusion"].splitlines()[1:]
        if res["resourceType"] != "Observation":
            continue
        comps = {c["code"]["coding"][0]["code"]: c for c in res.get("component", []) if c.get("code", {}).get("coding")}
        overall = comps.get("overall", {}).get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code")
        if overall:
            notes = "; ".join(n["text"] for n in res.get("note", []))
            _line(f"     {res.get('effectiveDateTime', '')[:10]}  overall {overall}{'  (' + notes + ')' if notes else ''}")
        elif res["code"]["coding"][0]["code"] == "best-overall-response":
            _line(f"     best overall response: {res['valueCodeableConcept']['coding'][0]['code']}")
    written["tumor-response"] = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in response["entry"]]


def _voxel_job(stack: Stack, gw: str, study: Any, what: str) -> str | None:
    """Upload ``study`` to the PACS (CT and SEG first), wait for the job that read it with its
    SEG, print its report; the report's reference."""
    from infra.demo_across import upload_emission_last, wait_for_job

    t0 = time.perf_counter()
    orthanc_id = upload_emission_last(f"http://127.0.0.1:{stack.config.orthanc_port}", study)
    _line(f"   {what} stored in the PACS (Orthanc study {orthanc_id}); waiting for the stable-study trigger "
          "and the dosimetry job...")
    try:
        task = wait_for_job(gw, study)
    except TimeoutError as exc:
        raise SystemExit(str(exc)) from None
    _line(f"     Task/{task['id']} {task['status']} after {time.perf_counter() - t0:.1f} s "
          f"({task.get('statusReason', {}).get('text', '')})")
    if task["status"] != "completed":
        return None
    report_ref = next(o["valueReference"]["reference"] for o in task["output"]
                      if o["valueReference"]["reference"].startswith("DiagnosticReport/"))
    report = requests.get(f"{gw}/{report_ref}", timeout=30).json()
    for line in report.get("conclusion", "").splitlines():
        _line(f"     {line}")
    return str(report_ref)


def _across_treatments(stack: Stack, gw: str, written: dict[str, list[str]], answers: dict[str, list[str]]) -> None:
    """Step 5: the MAA simulation, the Y-90 PET, their comparison, and a second plan."""
    from infra.demo_across import across_studies

    _line("5. Across treatments")
    # four lesions in the SEGs, three of them the follow-up's (segment label = BodyStructure id)
    maa, pet = across_studies(DICOM_PATIENT_ID, DEMO_LESIONS, {}, n=64, delivered_gbq=1.6)
    predicted = _voxel_job(stack, gw, maa, "Tc-99m MAA SPECT/CT (simulation of the plan)")
    delivered = _voxel_job(stack, gw, pet, "Post-SIRT Y-90 PET/CT")
    written["voxel-dosimetry"] = [r for r in (predicted, delivered) if r]
    if delivered:
        report = requests.get(f"{gw}/{delivered}", timeout=30).json()
        answers["3. BED and EQD2 per VOI (Y-90 PET)?"] = [
            line for line in report.get("conclusion", "").splitlines() if "BEDmean" in line]
    if predicted and delivered:
        comparison = _post(f"{gw}/$dose-comparison", {"resourceType": "Parameters", "parameter": [
            {"name": "predicted", "valueReference": {"reference": predicted}},
            {"name": "delivered", "valueReference": {"reference": delivered}}]}).json()
        lines = comparison["entry"][0]["resource"].get("conclusion", "").splitlines()
        _line("   $dose-comparison:")
        for line in lines:
            _line(f"     {line}")
        answers["1. Did the MAA predict what the Y-90 PET showed?"] = lines[1:]
        written["dose-comparison"] = [f"{e['resource']['resourceType']}/{e['resource']['id']}"
                                      for e in comparison["entry"]]
    second = _post(f"{gw}/$sirt-activity", _plan_parameters("mird", "glass", "2024-09-10T09:30:00Z", {
        "targetDoseGy": 120, "liverVolumeMl": 1800, "perfusedFraction": 0.4, "lungShuntFraction": 0.07})).json()
    values = _outputs(second)
    used = [p["valueReference"]["reference"] for p in second["parameter"] if p["name"] == "priorRecord"]
    text = (f"Second SIRT (MIRD, glass): {values.get('activityGBq')} GBq; lung {values.get('lungDoseGy')} Gy, prior "
            f"{values.get('priorLungDoseGy')} Gy from {', '.join(used) or 'no record'}, cumulative "
            f"{values.get('cumulativeLungDoseGy')} Gy (limit 50 Gy); status {values.get('status')}")
    _line(f"   {text}")
    answers["2. How much lung dose has the patient had?"] = [text]


def _write_figures(gateway_url: str) -> None:
    from netliver.report.fetch import HttpReader, load_case
    from netliver.report.plots import render_all

    case = load_case(HttpReader(f"{gateway_url}/fhir"), PATIENT_ID)
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    figures = render_all(case)
    for figure in figures:
        (FIGURES_DIR / f"{figure.name}.png").write_bytes(figure.png)
    _line(f"  figures: {len(figures)} PNG files in {FIGURES_DIR}")


def _wait_for_interrupt(gateway_url: str) -> None:
    _line(f"\nThe stack keeps running (KEEP=1). The tumour-board page of the demo patient:\n"
          f"    {gateway_url}/app/patient/{PATIENT_ID}\nCtrl-C stops every process.")
    while True:
        time.sleep(3600)


def _interrupt(signum: int, frame: object) -> None:
    # once: a second Ctrl-C (or the command line passing on the first) must not cut the stop short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM stop the demo wherever it is, and the stack with it. Set explicitly:
    a process started in the background inherits an ignored SIGINT."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def main(argv: list[str] | None = None) -> int:
    keep = "--keep" in (sys.argv[1:] if argv is None else argv)
    data_dir = ROOT / "var" / "demo"
    shutil.rmtree(data_dir, ignore_errors=True)
    with_pacs = shutil.which("Orthanc") is not None
    cfg = StackConfig(gateway_port=_port(int(os.environ.get("GATEWAY_PORT") or 8080)), eligibility_port=free_port(), response_port=free_port(),
                      dosimetry_port=free_port(), orthanc_port=free_port(), orthanc_dicom_port=free_port(),
                      data_dir=data_dir, with_orthanc=with_pacs, workers=1)
    cfg.env.update({"AUTH_MODE": "off", "JOB_QUEUE": "netliver-demo", "ORTHANC_CATCHUP_S": "0",
                    "LOG_LEVEL": "WARNING"})
    _line("netliver demo: starting the stack (gateway, eligibility, response, dosimetry, worker"
          f"{', Orthanc' if with_pacs else ''}); AUTH_MODE=off for this local demo.")
    started = time.perf_counter()
    stack = Stack(cfg)
    finished = False
    _stop_on_signals()
    try:
        stack.start()
        _line(f"   up in {time.perf_counter() - started:.1f} s at {stack.gateway_url}/fhir\n")
        written = run(stack, with_pacs)
        _line("\nWritten to the FHIR store (GET <gateway>/fhir/<Type>/<id>, each with a Provenance):")
        for op, refs in written.items():
            _line(f"  {op}: {len(refs)} resources, e.g. {', '.join(refs[:3])}")
        _line(f"  store: SQLite {Path(cfg.data_dir) / 'netliver.db'}; logs in {stack.log_dir}")
        _write_figures(stack.gateway_url)
        _line(f"\nDemo finished in {time.perf_counter() - started:.1f} s.")
        finished = True
        if keep:
            _wait_for_interrupt(stack.gateway_url)
    except KeyboardInterrupt:
        if not finished:
            _line("\nInterrupted before the demo finished.")
    finally:
        stack.stop()
        _line("Stack stopped.")
    return 0 if finished else 130


if __name__ == "__main__":
    sys.exit(main())
