"""``netliver``: run the gateway's operations from a terminal, print tables (or ``--json``).

Every command talks to the gateway (``NETLIVER_URL``, default ``http://127.0.0.1:8080``, or
``--url``; ``NETLIVER_TOKEN`` or ``--token`` for a bearer token when ``AUTH_MODE=jwt``). Exit codes
are listed in :mod:`netliver.cli.client`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from netliver.cli import tables
from netliver.cli.client import (
    EXIT_NO,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    Gateway,
    read_json_file,
)

__all__ = ["cli"]

EXIT_CODES = """\b
Exit codes: 0 done · 2 wrong usage · 3 the gateway refused the input (4xx) ·
4 the gateway or a service is unavailable · 5 done, but the answer is no
(contraindicated plan, failed job) · 1 unexpected error."""
_ROOT = Path(__file__).resolve().parents[2]


class _Ctx:
    def __init__(self, gateway: Gateway, as_json: bool) -> None:
        self.gateway, self.as_json = gateway, as_json
        # A pipe gets wide tables (no terminal width to fit); a terminal gets its own width.
        self.out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
        self.err = Console(stderr=True)

    def emit(self, data: Any, render: Callable[[Console], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            render(self.out)


def _run(fn: Callable[[], int]) -> None:
    """Run a command body, turning :class:`CliError` into its message and exit code."""
    try:
        code = fn()
    except CliError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(err.code)
    sys.exit(code)


@click.group(epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--url", envvar="NETLIVER_URL", default="http://127.0.0.1:8080", show_default=True,
              help="The gateway (env NETLIVER_URL).")
@click.option("--token", envvar="NETLIVER_TOKEN", default=None, help="Bearer token for AUTH_MODE=jwt (env NETLIVER_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Print the FHIR JSON answer instead of tables.")
@click.version_option(package_name="netliver")
@click.pass_context
def cli(ctx: click.Context, url: str, token: str | None, as_json: bool) -> None:
    """netliver: eligibility, SIRT planning, voxel dosimetry and tumour response from a terminal.

    \b
    Examples:
      netliver eligibility patient-bundle.json
      netliver response --criteria mrecist follow-up.json
      netliver sirt --method partition --device resin --liver-volume-ml 1800 \\
          --tumor-volume-ml 300 --lung-shunt-fraction 0.07 --tumor-to-normal-ratio 4 \\
          --target-dose-gy 120 --normal-liver-limit-gy 40
      netliver dosimetry 1.2.826.0.1.3680043.8.498.1 --activity-gbq 2 --follow
      netliver --json eligibility patient-bundle.json | jq .
      netliver serve            # the whole stack in the foreground
      netliver demo --keep      # the demo patient, then leave the stack running
    """
    ctx.obj = _Ctx(Gateway(url, token), as_json)


@cli.command(epilog=EXIT_CODES)
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--date", "on", default=None, help="Evaluation date (YYYY-MM-DD; default today).")
@click.pass_obj
def eligibility(obj: _Ctx, bundle: Path, on: str | None) -> None:
    """Eligibility of the patient in BUNDLE (a FHIR Bundle JSON file) for the 13 therapies.

    \b
    Example:
      netliver eligibility patient-bundle.json
    """
    def body() -> int:
        answer = obj.gateway.post("$evaluate-eligibility", read_json_file(bundle),
                                  {"date": on} if on else None).json()
        obj.emit(answer, lambda out: tables.eligibility(out, answer))
        return 0
    _run(body)


@cli.command(epilog=EXIT_CODES)
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--criteria", default="recist-1.1", show_default=True,
              type=click.Choice(["recist-1.1", "mrecist", "choi", "percist", "irecist", "easl"]))
@click.pass_obj
def response(obj: _Ctx, bundle: Path, criteria: str) -> None:
    """Tumour response over the assessments in BUNDLE (lesion Observations, BodyStructures, ...).

    \b
    Example:
      netliver response --criteria recist-1.1 follow-up.json
    """
    def body() -> int:
        answer = obj.gateway.post("$tumor-response", read_json_file(bundle), {"criteria": criteria}).json()
        obj.emit(answer, lambda out: tables.response(out, answer))
        return 0
    _run(body)


#: --option → (Parameters name, FHIR value type) of $sirt-activity.
SIRT_OPTIONS: dict[str, tuple[str, str]] = {
    "height_cm": ("heightCm", "Decimal"), "weight_kg": ("weightKg", "Decimal"), "bsa_m2": ("bsaM2", "Decimal"),
    "tumor_involvement": ("tumorInvolvement", "Decimal"), "liver_volume_ml": ("liverVolumeMl", "Decimal"),
    "tumor_volume_ml": ("tumorVolumeMl", "Decimal"), "perfused_fraction": ("perfusedFraction", "Decimal"),
    "lung_shunt_fraction": ("lungShuntFraction", "Decimal"), "tumor_to_normal_ratio": ("tumorToNormalRatio", "Decimal"),
    "target_dose_gy": ("targetDoseGy", "Decimal"), "normal_liver_limit_gy": ("normalLiverLimitGy", "Decimal"),
    "lung_limit_gy": ("lungLimitGy", "Decimal"), "prior_lung_dose_gy": ("priorLungDoseGy", "Decimal"),
    "lung_mass_kg": ("lungMassKg", "Decimal"), "calibration_time": ("calibrationTime", "DateTime"),
    "treatment_time": ("treatmentTime", "DateTime"),
}


def _sirt_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for name, (param, kind) in reversed(SIRT_OPTIONS.items()):
        fn = click.option(f"--{name.replace('_', '-')}", name, type=float if kind == "Decimal" else str,
                          default=None, help=f"{param}")(fn)
    return fn


@cli.command(epilog=EXIT_CODES)
@click.option("--method", required=True, type=click.Choice(["bsa", "mird", "partition"]))
@click.option("--device", default="resin", show_default=True, type=click.Choice(["resin", "glass"]))
@_sirt_options
@click.option("--patient", default=None, help="Patient id: prior lung doses come from the store.")
@click.option("--param", "extra", multiple=True, metavar="NAME=NUMBER", help="Any other decimal parameter.")
@click.pass_obj
def sirt(obj: _Ctx, /, method: str, device: str, patient: str | None, extra: tuple[str, ...], **values: Any) -> None:
    """Y-90 SIRT activity plan ($sirt-activity). Exit 5 when the plan is contraindicated.

    \b
    Example:
      netliver sirt --method partition --device resin --liver-volume-ml 1800 \\
          --tumor-volume-ml 300 --lung-shunt-fraction 0.07 --tumor-to-normal-ratio 4 \\
          --target-dose-gy 120 --normal-liver-limit-gy 40
    """
    def body() -> int:
        params: list[dict[str, Any]] = [{"name": "method", "valueCode": method}, {"name": "device", "valueCode": device}]
        for key, value in values.items():
            if value is not None:
                name, kind = SIRT_OPTIONS[key]
                params.append({"name": name, f"value{kind}": value})
        for item in extra:
            name, sep, number = item.partition("=")
            try:
                params.append({"name": name, "valueDecimal": float(number)})
            except ValueError as exc:
                raise CliError(f"--param {item!r}: expected NAME=NUMBER", EXIT_USAGE) from exc
            if not sep or not name:
                raise CliError(f"--param {item!r}: expected NAME=NUMBER", EXIT_USAGE)
        if patient:
            params.append({"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}})
        answer = obj.gateway.post("$sirt-activity", {"resourceType": "Parameters", "parameter": params}).json()
        obj.emit(answer, lambda out: tables.sirt(out, answer))
        status = next((p.get("valueCode") for p in answer.get("parameter", []) if p.get("name") == "status"), "")
        return EXIT_NO if status == "contraindicated" else 0
    _run(body)


@cli.command(epilog=EXIT_CODES)
@click.argument("study_uid")
@click.option("--activity-gbq", type=float, required=True, help="administeredActivityGBq (Y-90).")
@click.option("--method", default="ldm", show_default=True, type=click.Choice(["ldm", "dvk"]))
@click.option("--segmentation", default=None, help="segmentationSeriesUid (DICOM SEG or RTSTRUCT).")
@click.option("--follow", is_flag=True, help="Show the job's progress until it ends, then the per-VOI table.")
@click.option("--timeout", "timeout_s", type=float, default=900, show_default=True, help="Seconds to follow.")
@click.pass_obj
def dosimetry(obj: _Ctx, study_uid: str, activity_gbq: float, method: str, segmentation: str | None,
              follow: bool, timeout_s: float) -> None:
    """Voxel dosimetry of STUDY_UID in the PACS ($voxel-dosimetry, asynchronous).

    \b
    Example:
      netliver dosimetry 1.2.826.0.1.3680043.8.498.1 --activity-gbq 2 --follow
    """
    def body() -> int:
        params: list[dict[str, Any]] = [
            {"name": "studyInstanceUid", "valueString": study_uid},
            {"name": "administeredActivityGBq", "valueDecimal": activity_gbq},
            {"name": "method", "valueCode": method}]
        if segmentation:
            params.append({"name": "segmentationSeriesUid", "valueString": segmentation})
        resp = obj.gateway.post("$voxel-dosimetry", {"resourceType": "Parameters", "parameter": params},
                                headers={"Prefer": "respond-async"})
        task = resp.json()
        status_url = resp.headers.get("Content-Location") or f"{obj.gateway.fhir}/Task/{task['id']}"
        if not follow:
            obj.emit(task, lambda out: out.print(f"Task/{task['id']} {task.get('status')}; status: {status_url}"))
            return 0
        # progress is followed on the Task itself: the status URL of the FHIR asynchronous pattern
        # answers 202 with only an X-Progress header while the job runs
        task_url = resp.headers.get("Location") or f"{obj.gateway.fhir}/Task/{task['id']}"
        task = _follow(obj, task_url, timeout_s)
        return _finish(obj, task)
    _run(body)


def _task_of(answer: dict[str, Any]) -> dict[str, Any]:
    if answer.get("resourceType") == "Bundle":  # the async pattern's final batch-response
        for entry in answer.get("entry", []):
            if (entry.get("resource") or {}).get("resourceType") == "Task":
                return dict(entry["resource"])
    return answer


def _progress_of(task: dict[str, Any]) -> float:
    for ext in task.get("extension", []):
        if str(ext.get("url", "")).endswith("/task-progress"):
            return float(ext.get("valueDecimal", 0.0))
    return 1.0 if task.get("status") == "completed" else 0.0


def _stage_seconds(task: dict[str, Any]) -> dict[str, float]:
    """Seconds per stage from the Task's stage-times extension, in the order the job ran them."""
    for ext in task.get("extension", []):
        if str(ext.get("url", "")).endswith("/task-stage-seconds"):
            return {str(e["url"]): float(e.get("valueDecimal", 0.0)) for e in ext.get("extension", [])
                    if e.get("url") != "total"}
    return {}


def _follow(obj: _Ctx, status_url: str, timeout_s: float) -> dict[str, Any]:
    """Poll the job until it ends, with a progress bar showing the stage names."""
    deadline = time.monotonic() + timeout_s
    columns = (TextColumn("[bold]{task.description:<28}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=obj.err, transient=False, disable=obj.as_json and not obj.err.is_terminal) as bar:
        row = bar.add_task("requested", total=1.0)
        stages: list[str] = []
        while True:
            task = _task_of(obj.gateway.get(status_url))
            stage = str((task.get("businessStatus") or {}).get("text") or task.get("status"))
            if not stages or stages[-1] != stage:
                stages.append(stage)
                if len(stages) > 1:
                    bar.console.print(f"  · {stages[-2]} done", highlight=False)
            bar.update(row, description=stage, completed=_progress_of(task))
            if task.get("status") in {"completed", "failed", "cancelled", "rejected"}:
                # a short job can pass several stages between two polls: the Task's recorded
                # stage times name every stage it went through, so none is left unreported
                for name, seconds in _stage_seconds(task).items():
                    if name not in stages[:-1]:
                        bar.console.print(f"  · {name} done ({seconds:.1f} s)", highlight=False)
                return task
            if time.monotonic() > deadline:
                raise CliError(f"the job did not end in {timeout_s:g} s (still {stage}); it keeps running: "
                               f"{status_url}", EXIT_UNAVAILABLE)
            time.sleep(0.5)


def _finish(obj: _Ctx, task: dict[str, Any]) -> int:
    if task.get("status") != "completed":
        reason = (task.get("statusReason") or {}).get("text", "no reason given")
        obj.emit(task, lambda out: out.print(f"[bold red]Task/{task['id']} {task.get('status')}[/]: {reason}"))
        return EXIT_NO
    refs = [o["valueReference"]["reference"] for o in task.get("output", []) if o.get("valueReference")]
    resources = [obj.gateway.get(ref) for ref in refs]
    answer = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in [task, *resources]]}
    obj.emit(answer, lambda out: tables.dosimetry(out, task, resources))
    return 0


def _infra(module: str, *args: str) -> int:
    """Run ``python -m infra.<module>`` from the source tree (the stack launcher lives there)."""
    if not (_ROOT / "infra" / f"{module}.py").is_file():
        raise CliError(f"infra/{module}.py not found beside the package ({_ROOT}): run from a source checkout",
                       EXIT_USAGE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", f"infra.{module}", *args], cwd=_ROOT, env=env)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the whole foreground group, or SIGINT this command alone (kill -INT):
            # either way the launcher is told and stops the processes it started; it ignores a
            # second SIGINT, so this one is harmless when it already had it. Never killed from
            # here: its children would be left running.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)


@cli.command(epilog=EXIT_CODES)
def serve() -> None:
    """The whole stack in the foreground (gateway on 8080); Ctrl-C stops every process.

    \b
    Example:
      netliver serve
    """
    _run(lambda: _infra("stack", "serve"))


@cli.command(epilog=EXIT_CODES)
@click.option("--keep", is_flag=True, help="Leave the stack running after the summary (Ctrl-C stops it).")
def demo(keep: bool) -> None:
    """One synthetic patient through every operation on a stack started for it.

    \b
    Example:
      netliver demo --keep
    """
    _run(lambda: _infra("demo", *(["--keep"] if keep else [])))
