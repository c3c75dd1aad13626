"""What people use, on the demo patient of a real stack (PACS and worker included): the
tumour-board page in headless Chromium (Debian's build, driven by Selenium through Debian's
chromedriver) and the ``netliver`` command line.

The page's tables are checked against the FHIR results, every image must load, the browser
console must stay clean and axe-core (npm, injected by the test) must find no serious or
critical accessibility violation. Screenshots of each section, the load time and the axe
result are kept under ``var/test-artefacts/page/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.demo import PATIENT_ID, run
from infra.demo_follow_up import synthetic_follow_up_bundle
from infra.demo_patients import realistic_patient
from infra.stack import ROOT, Stack
from netliver.fhir.codesystems import (
    OBSERVATION_CODE_SYSTEM,
    RESPONSE_SYSTEM,
    STATUS_SYSTEM,
    THERAPY_SYSTEM,
)
from netliver.fhir.sampled_dvh import report_dvh
from tests.support.stack import make_stack, running

ARTEFACTS = ROOT / "var" / "test-artefacts" / "page"
SECTIONS = ("eligibility", "sirt", "dosimetry", "comparison", "response", "dose-response", "markers", "ctcae")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(shutil.which("Orthanc") is None, reason="Orthanc is not installed (make system-deps)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(make_stack(tmp_path_factory.mktemp("people"), workers=1, with_orthanc=True,
                            env={"ORTHANC_CATCHUP_S": "0"})) as s:
        run(s, with_pacs=True)  # the demo's patient through every operation
        yield s


def _search(stack: Stack, rtype: str, **params: str) -> list[dict[str, Any]]:
    bundle = requests.get(f"{stack.gateway_url}/fhir/{rtype}", params={"_count": "500", **params}, timeout=30).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _code(concept: Any, system: str) -> str:
    return next((c["code"] for c in (concept or {}).get("coding", []) if c.get("system") == system), "")


# ------------------------------------------------------------------------------- browser ----

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.fail("chromium and chromium-driver are missing: make system-deps installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let Selenium fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                 "--window-size=1500,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(stack: Stack, browser: Any) -> dict[str, Any]:
    """The demo patient's page loaded once; load time and browser log recorded."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    browser.get_log("browser")  # start with an empty log
    started = time.perf_counter()
    browser.get(f"{stack.gateway_url}/app/patient/{PATIENT_ID}")
    load_s = time.perf_counter() - started
    timing = browser.execute_script(
        "const t = performance.getEntriesByType('navigation')[0];"
        "return {domContentLoadedMs: t.domContentLoadedEventEnd, loadMs: t.loadEventEnd};")
    return {"load_s": load_s, "timing": timing, "log": browser.get_log("browser")}


def test_the_page_loads_with_every_image_and_a_clean_console(page: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    images = browser.find_elements(By.CSS_SELECTOR, "img")
    assert len(images) >= 4  # DVH, waterfall, spider, markers
    for img in images:
        loaded = browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        assert loaded and loaded > 0, f"image did not load: {img.get_attribute('src')}"
        assert len(img.get_attribute("alt") or "") > 40, "every figure needs a text alternative with its numbers"
    errors = [e for e in page["log"] if e.get("level") == "SEVERE"]
    assert errors == []
    # once more: the dose maps' images are then read from what the first load fetched from the PACS
    started = time.perf_counter()
    browser.get(f"{browser.current_url.split('#')[0]}")
    again = browser.execute_script(
        "const t = performance.getEntriesByType('navigation')[0];"
        "return {domContentLoadedMs: t.domContentLoadedEventEnd, loadMs: t.loadEventEnd};")
    (ARTEFACTS / "load.json").write_text(json.dumps({
        "first": {"wallClockS": round(page["load_s"], 3), **page["timing"]},
        "again": {"wallClockS": round(time.perf_counter() - started, 3), **again}}, indent=2))


def test_each_section_is_kept_as_a_screenshot(page: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1500, min(int(height) + 200, 16000))
    for section in SECTIONS:
        element = browser.find_element(By.ID, section)
        path = ARTEFACTS / f"{section}.png"
        assert element.screenshot(str(path)), section
        assert path.stat().st_size > 5000
    browser.save_screenshot(str(ARTEFACTS / "page.png"))
    browser.set_window_size(1500, 1000)


def test_the_eligibility_table_shows_the_stored_results(stack: Stack, page: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    stored: dict[str, dict[str, Any]] = {}
    for obs in _search(stack, "Observation", subject=f"Patient/{PATIENT_ID}"):
        therapy = _code(obs.get("code"), THERAPY_SYSTEM)
        if therapy and _code(obs.get("valueCodeableConcept"), STATUS_SYSTEM):
            stored[therapy] = obs
    rows = browser.find_elements(By.CSS_SELECTOR, "table.eligibility tbody tr")
    assert len(rows) == 13 == len(stored)
    for row in rows:
        obs = stored[row.get_attribute("data-therapy")]
        status = _code(obs["valueCodeableConcept"], STATUS_SYSTEM)
        cell = row.find_element(By.CSS_SELECTOR, "td.status")
        assert cell.get_attribute("data-status") == status
        assert cell.text.strip()[0] in "✔⚠✖?" and len(cell.text) > 3  # icon and words, never colour alone
        rules = {n["text"].split(" · ")[0].lstrip("[") for n in obs.get("note", []) if n["text"].startswith("[")}
        shown = {c.text for c in row.find_elements(By.CSS_SELECTOR, "ul.reasons code")}
        assert shown <= rules
        if status == "ineligible":
            assert shown, f"{row.get_attribute('data-therapy')}: an ineligible row must show why"


def test_the_dose_table_shows_each_vois_stored_metrics(stack: Stack, page: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    rows = browser.find_elements(By.CSS_SELECTOR, "table.dose-table tbody tr")
    assert rows
    for row in rows:
        obs = requests.get(f"{stack.gateway_url}/fhir/{row.get_attribute('data-resource')}", timeout=10).json()
        metrics = {_code(c["code"], OBSERVATION_CODE_SYSTEM): c["valueQuantity"] for c in obs["component"]
                   if _code(c.get("code"), OBSERVATION_CODE_SYSTEM)}
        for name, code in (("Dmean", "dose-mean"), ("D70", "dose-d70"), ("D90", "dose-d90"), ("V100", "dose-v100")):
            cell = row.find_element(By.CSS_SELECTOR, f'td[data-metric="{name}"]').text
            assert cell == f"{metrics[code]['value']:.1f} {metrics[code]['unit']}"


def test_the_sampled_dvh_table_shows_the_stored_curve(stack: Stack, page: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    tables = browser.find_elements(By.CSS_SELECTOR, "table.dvh-table")
    voxels = [r for r in _search(stack, "DiagnosticReport", subject=f"Patient/{PATIENT_ID}")
              if _code(r["code"], OBSERVATION_CODE_SYSTEM) == "voxel-dosimetry-report"]
    assert len(tables) == len(voxels) >= 1
    for table in tables:
        report = requests.get(f"{stack.gateway_url}/fhir/{table.get_attribute('data-resource')}", timeout=10).json()
        curves = report_dvh(report)
        names = [th.get_attribute("textContent").strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")][1:]
        assert names == list(curves)
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
            level = float(row.find_element(By.CSS_SELECTOR, "th").get_attribute("textContent").strip().rstrip(" %"))
            cells = [td.get_attribute("textContent").strip() for td in row.find_elements(By.CSS_SELECTOR, "td")]
            assert cells == [f"{dict(curves[name])[level]:.1f} Gy" for name in names]


def test_each_voxel_report_has_a_dose_map_from_the_pacs_and_a_slice_chooser(stack: Stack, page: dict[str, Any],
                                                                             browser: Any) -> None:
    from selenium.webdriver.common.by import By

    voxels = [r for r in _search(stack, "DiagnosticReport", subject=f"Patient/{PATIENT_ID}")
              if _code(r["code"], OBSERVATION_CODE_SYSTEM) == "voxel-dosimetry-report"]
    tables = browser.find_elements(By.CSS_SELECTOR, "table.dose-map-table")
    assert len(tables) == len(voxels) >= 1, browser.find_element(By.ID, "dosimetry").text[:2000]
    for table in tables:
        cells = {td.get_attribute("data-value"): td.text for td in table.find_elements(By.CSS_SELECTOR, "td")}
        assert cells["max"].endswith(" Gy") and float(cells["max"].split()[0]) > 0
        assert cells["segments"] and cells["segments"] != "none in this slice"  # the hottest slice crosses a VOI
    browser.find_element(By.ID, "dose-map-1").screenshot(str(ARTEFACTS / "dose-map.png"))  # the hottest slice
    # choosing a slice is a plain GET form: submit slice 1 of the first map
    field = browser.find_element(By.ID, "slice1")
    field.clear()
    field.send_keys("1")
    before = browser.find_element(By.CSS_SELECTOR, "table.dose-map-table")
    field.submit()
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(browser, 60).until(expected_conditions.staleness_of(before))  # the new page has loaded
    first = browser.find_element(By.CSS_SELECTOR, "table.dose-map-table")
    assert first.find_element(By.CSS_SELECTOR, 'td[data-value="slice"]').text.startswith("1 of ")
    image = browser.find_element(By.CSS_SELECTOR, "section.dose-map img")
    assert image.get_attribute("src").endswith("slice=1")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
    browser.get(f"{stack.gateway_url}/app/patient/{PATIENT_ID}")  # back to the page the other tests read


def test_the_response_tables_show_each_criterions_visits(stack: Stack, page: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    visits: dict[str, dict[str, str]] = {}
    for obs in _search(stack, "Observation", subject=f"Patient/{PATIENT_ID}"):
        if _code(obs.get("code"), RESPONSE_SYSTEM) == "tumor-response":
            criterion = _code(obs.get("method"), RESPONSE_SYSTEM)
            visits.setdefault(criterion, {})[obs["effectiveDateTime"][:10]] = _code(obs["valueCodeableConcept"], RESPONSE_SYSTEM)
    tables = browser.find_elements(By.CSS_SELECTOR, "table.response")
    assert {t.get_attribute("data-criterion") for t in tables} == set(visits) == {"recist-1.1", "mrecist", "choi", "percist"}
    for table in tables:
        shown = {r.find_element(By.CSS_SELECTOR, "th").text: r.find_element(By.CSS_SELECTOR, "td.category").text
                 for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")}
        assert shown == visits[table.get_attribute("data-criterion")]


def _stored_components(stack: Stack, reference: str) -> dict[str, Any]:
    obs = requests.get(f"{stack.gateway_url}/fhir/{reference}", timeout=10).json()
    return {_code(c["code"], OBSERVATION_CODE_SYSTEM): c.get("valueQuantity", c.get("valueCodeableConcept"))
            for c in obs["component"]}


def _quantity_text(quantity: dict[str, Any], digits: int) -> str:
    return f"{float(quantity['value']):.{digits}f} {quantity['unit']}"


def test_the_comparison_table_shows_predicted_and_delivered_as_stored(stack: Stack, page: dict[str, Any],
                                                                      browser: Any) -> None:
    from selenium.webdriver.common.by import By

    reports = [r for r in _search(stack, "DiagnosticReport", subject=f"Patient/{PATIENT_ID}")
               if _code(r["code"], OBSERVATION_CODE_SYSTEM) == "dose-comparison-report"]
    assert reports, "the demo runs $dose-comparison on its MAA simulation and Y-90 PET"
    articles = browser.find_elements(By.CSS_SELECTOR, "article.comparison")
    assert {a.get_attribute("data-resource") for a in articles} == {f"DiagnosticReport/{r['id']}" for r in reports}
    rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "table.comparison-table tbody tr")
            if (r.get_attribute("data-resource") or "").startswith("Observation/")]
    per_voi = {ref["reference"] for r in reports for ref in r["result"]
               if _code(requests.get(f"{stack.gateway_url}/fhir/{ref['reference']}", timeout=10).json()["code"],
                        OBSERVATION_CODE_SYSTEM) == "dose-comparison"}  # the lung-shunt one has its own row
    assert {r.get_attribute("data-resource") for r in rows} == per_voi and len(rows) >= 2
    for row in rows:
        comps = _stored_components(stack, row.get_attribute("data-resource"))
        for shown, code in (("predicted-Dmean", "predicted-dose-mean"), ("delivered-Dmean", "delivered-dose-mean"),
                            ("difference-Dmean", "dose-mean-difference"), ("predicted-D70", "predicted-dose-d70"),
                            ("delivered-D70", "delivered-dose-d70"), ("predicted-V100", "predicted-dose-v100"),
                            ("delivered-V100", "delivered-dose-v100")):
            cell = row.find_element(By.CSS_SELECTOR, f'td[data-value="{shown}"]').text
            assert cell == (_quantity_text(comps[code], 1) if code in comps else "—"), (shown, cell)


def test_the_dose_response_table_shows_each_lesion_as_stored(stack: Stack, page: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    stored = [o for o in _search(stack, "Observation", subject=f"Patient/{PATIENT_ID}")
              if _code(o["code"], OBSERVATION_CODE_SYSTEM) == "lesion-dose-response"]
    rows = browser.find_elements(By.CSS_SELECTOR, "table.dose-response-table tbody tr")
    shown_refs = {r.get_attribute("data-resource") for r in rows}
    reports = [r for r in _search(stack, "DiagnosticReport", subject=f"Patient/{PATIENT_ID}")
               if _code(r["code"], OBSERVATION_CODE_SYSTEM) == "dose-response-report"]
    assert reports, "the demo's phantom segments are its follow-up lesions (L1, L2, NT1): their doses pair"
    assert shown_refs == {i["reference"] for r in reports for i in r["result"]} <= {f"Observation/{o['id']}" for o in stored}
    for row in rows:
        comps = _stored_components(stack, row.get_attribute("data-resource"))
        for code, digits in (("dose-mean", 1), ("bed-mean", 1), ("lesion-baseline-size", 0),
                             ("lesion-latest-size", 0), ("lesion-size-change", 1)):
            cell = row.find_element(By.CSS_SELECTOR, f'td[data-value="{code}"]').text
            assert cell == (_quantity_text(comps[code], digits) if code in comps else "—"), (code, cell)


def test_no_serious_accessibility_violation(page: dict[str, Any], browser: Any) -> None:
    subprocess.run(["bash", str(ROOT / "infra" / "install-node-deps.sh")], check=True)
    axe = (ROOT / "var" / "node" / "axe" / "node_modules" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
    browser.execute_script(axe)
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations), e => done(String(e)));")
    assert isinstance(result, list), result
    (ARTEFACTS / "axe.json").write_text(json.dumps(
        [{"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]), "help": v["help"]} for v in result], indent=2))
    serious = [(v["id"], v["impact"], v["help"]) for v in result if v["impact"] in {"serious", "critical"}]
    assert serious == []


def test_the_find_page_links_to_the_patient(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.gateway_url}/app/?q=demo")
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "table.data a")]
    assert any(link.endswith(f"/app/patient/{PATIENT_ID}") for link in links)
    unknown = requests.get(f"{stack.gateway_url}/app/patient/nobody", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"


def test_stored_reports_carry_their_figures_and_a_pdf(stack: Stack) -> None:
    reports = _search(stack, "DiagnosticReport", subject=f"Patient/{PATIENT_ID}")
    kinds = {_code(r["code"], OBSERVATION_CODE_SYSTEM) or _code(r["code"], RESPONSE_SYSTEM): r for r in reports}
    voxels = [r for r in reports if _code(r["code"], OBSERVATION_CODE_SYSTEM) == "voxel-dosimetry-report"]
    assert voxels and kinds["voxel-dosimetry-report"] in voxels
    # the page draws one DVH per voxel report (dvh-1, dvh-2, ...); each stored report carries the
    # same figure as the page's for that report (compared by digest, so a failure names sizes,
    # not megabytes of PNG)
    served = [hashlib.sha256(requests.get(f"{stack.gateway_url}/app/patient/{PATIENT_ID}/figure/dvh-{i}.png",
                                          timeout=30).content).hexdigest() for i in range(1, len(voxels) + 1)]
    # the forms are named by url (Binary/<id>, relative to the FHIR base) and drawn on first read
    def form(attachment: dict[str, Any]) -> bytes:
        assert "data" not in attachment and attachment["url"].startswith("Binary/"), attachment
        resp = requests.get(f"{stack.gateway_url}/fhir/{attachment['url']}",
                            headers={"Accept": attachment["contentType"]}, timeout=60)
        assert resp.status_code == 200 and resp.headers["Content-Type"] == attachment["contentType"], resp.text[:200]
        return resp.content

    for voxel in voxels:
        # the job's sampled DVH (CSV), then the figure and the PDF the gateway named
        assert [f["contentType"] for f in voxel["presentedForm"]] == ["text/csv", "image/png", "application/pdf"]
        assert len(report_dvh(voxel)) == len(voxel["result"]) and all(len(c) == 101 for c in report_dvh(voxel).values())
        png = form(voxel["presentedForm"][1])
        assert hashlib.sha256(png).hexdigest() in served, (voxel["id"], len(png))
        assert form(voxel["presentedForm"][1]) == png  # stored at the first read: the same bytes
    assert len(set(served)) == len(voxels)  # one distinct figure per report
    for report in reports:
        pdfs = [f for f in report.get("presentedForm", []) if f["contentType"] == "application/pdf"]
        assert pdfs, report["code"]
        assert form(pdfs[0])[:5] == b"%PDF-"
    response_forms = [f["title"] for r in reports for f in r.get("presentedForm", []) if f["contentType"] == "image/png"]
    assert {"Waterfall plot", "Spider plot", "Tumour markers"} <= set(response_forms)
    pdf = requests.get(f"{stack.gateway_url}/app/patient/{PATIENT_ID}/report.pdf", timeout=60)
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf" and pdf.content[:5] == b"%PDF-"


# ------------------------------------------------------------------------- command line ----

def _netliver(stack: Stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netliver.cli", "--url", stack.gateway_url, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _write(tmp_path: Path, name: str, data: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_cli_eligibility_and_response_print_tables_and_json(stack: Stack, tmp_path: Path) -> None:
    patient = _write(tmp_path, "patient.json", realistic_patient("cli-patient"))
    table = _netliver(stack, "eligibility", patient)
    assert table.returncode == 0, table.stderr
    assert "Intra-arterial PRRT" in table.stdout and "Ineligible" in table.stdout
    answer = json.loads(_netliver(stack, "--json", "eligibility", patient).stdout)
    assert sum(1 for e in answer["entry"] if _code(e["resource"].get("code"), THERAPY_SYSTEM)) == 13
    follow_up = _write(tmp_path, "follow-up.json", synthetic_follow_up_bundle())
    done = _netliver(stack, "--json", "response", "--criteria", "mrecist", follow_up)
    assert done.returncode == 0, done.stderr
    visits = [e["resource"] for e in json.loads(done.stdout)["entry"]
              if _code(e["resource"].get("code"), RESPONSE_SYSTEM) == "tumor-response"]
    assert len(visits) == 3 and {_code(v["method"], RESPONSE_SYSTEM) for v in visits} == {"mrecist"}


def test_cli_sirt_exit_codes_tell_ok_contraindicated_refused_and_unreachable(stack: Stack) -> None:
    plan = ["sirt", "--method", "partition", "--liver-volume-ml", "1800", "--tumor-volume-ml", "300",
            "--tumor-to-normal-ratio", "4", "--target-dose-gy", "120", "--normal-liver-limit-gy", "40"]
    ok = _netliver(stack, "--json", *plan, "--lung-shunt-fraction", "0.07")
    assert ok.returncode == 0, ok.stderr
    values = {p["name"]: p for p in json.loads(ok.stdout)["parameter"]}
    assert values["status"]["valueCode"] == "ok" and values["activityGBq"]["valueDecimal"] > 0
    assert _netliver(stack, *plan, "--lung-shunt-fraction", "0.25").returncode == 5  # > 20 % shunt
    refused = _netliver(stack, "sirt", "--method", "partition", "--liver-volume-ml", "-5")
    assert refused.returncode == 3 and "liverVolumeMl" in refused.stderr
    down = subprocess.run([sys.executable, "-m", "netliver.cli", "--url", "http://127.0.0.1:9", "sirt", "--method", "bsa"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert down.returncode == 4
    assert _netliver(stack, "eligibility", "/no/such/file.json").returncode == 2


def test_cli_dosimetry_follows_the_job_stage_by_stage(stack: Stack) -> None:
    task = next(t for t in _search(stack, "Task") if t["status"] == "completed")
    study = next(i["valueString"] for i in task["input"] if i["type"]["text"] == "studyInstanceUid")
    done = _netliver(stack, "--json", "dosimetry", study, "--activity-gbq", "2", "--method", "dvk", "--follow")
    assert done.returncode == 0, done.stderr
    printed = {line.strip().removeprefix("· ").split(" done")[0] for line in done.stderr.splitlines()
               if line.strip().startswith("· ") and " done" in line}
    resources = [e["resource"] for e in json.loads(done.stdout)["entry"]]
    assert resources[0]["resourceType"] == "Task" and resources[0]["status"] == "completed"
    timed = next(e for e in resources[0]["extension"] if e["url"].endswith("/task-stage-seconds"))
    ran = {e["url"] for e in timed["extension"]} - {"total"}
    # every stage the job went through is named once, even those passed between two polls
    assert {"fetch", "store"} <= ran <= printed, done.stderr
    vois = [r for r in resources if r["resourceType"] == "Observation"]
    assert vois and all(r["valueQuantity"]["unit"] == "Gy" for r in vois)


@pytest.mark.parametrize("command", ["eligibility", "response", "sirt", "dosimetry", "serve", "demo"])
def test_cli_help_has_examples(command: str) -> None:
    done = subprocess.run([sys.executable, "-m", "netliver.cli", command, "--help"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0 and "Example" in done.stdout and "Exit codes" in done.stdout
