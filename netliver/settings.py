"""Settings: every environment variable of every netliver process, in one place.

Each setting has a type, a default and a line of documentation; ``README.md`` shows the same
table (``python -m netliver.settings`` prints it). A process builds one :class:`Settings` at
start (:meth:`Settings.from_env`) and passes it down; nothing reads ``os.environ`` elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["Settings"]


def _setting(default: Any, env: str, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclass(frozen=True)
class Settings:
    """Typed configuration of a netliver process."""

    # -- network ----------------------------------------------------------------------------
    gateway_host: str = _setting("127.0.0.1", "GATEWAY_HOST", "Address the gateway binds to.")
    gateway_port: int = _setting(8080, "GATEWAY_PORT", "Port of the gateway (the only entry point).")
    public_base_url: str = _setting("", "PUBLIC_BASE_URL", "Base URL callers see (default http://GATEWAY_HOST:GATEWAY_PORT).")
    eligibility_url: str = _setting("http://127.0.0.1:8091", "ELIGIBILITY_URL", "Internal URL of the eligibility service.")
    response_url: str = _setting("http://127.0.0.1:8092", "RESPONSE_URL", "Internal URL of the response service.")
    dosimetry_url: str = _setting("http://127.0.0.1:8093", "DOSIMETRY_URL", "Internal URL of the dosimetry service.")
    internal_token: str = _setting("netliver-dev-internal", "INTERNAL_TOKEN", "Shared secret for worker → gateway job calls (set it in production).")
    gateway_internal_url: str = _setting("", "GATEWAY_INTERNAL_URL", "URL workers use to reach the gateway (default http://127.0.0.1:GATEWAY_PORT).")
    service_timeout_s: float = _setting(30.0, "SERVICE_TIMEOUT_S", "Timeout of gateway → service calls, seconds.")
    # -- storage ----------------------------------------------------------------------------
    database_url: str = _setting("sqlite:///var/netliver.db", "DATABASE_URL", "Embedded FHIR store and job records: SQLite file by default, postgresql+psycopg://… for PostgreSQL.")
    fhir_upstream_url: str = _setting("", "FHIR_UPSTREAM_URL", "Upstream FHIR R4 server to read from and write to; empty = embedded store.")
    fhir_upstream_token: str = _setting("", "FHIR_UPSTREAM_TOKEN", "Bearer token sent to the upstream FHIR server, if any.")
    fhir_upstream_transaction_size: int = _setting(50, "FHIR_UPSTREAM_TRANSACTION_SIZE", "Most entries the gateway sends the upstream FHIR server in one transaction; larger write-backs go in chunks (Provenance last).")
    # -- jobs -------------------------------------------------------------------------------
    redis_url: str = _setting("redis://127.0.0.1:6379/0", "REDIS_URL", "Celery broker and result backend (Redis).")
    job_visibility_timeout_s: int = _setting(300, "JOB_VISIBILITY_TIMEOUT_S", "Seconds before an unacknowledged job message is redelivered to another worker.")
    job_queue: str = _setting("netliver-dosimetry", "JOB_QUEUE", "Celery queue the dosimetry workers consume.")
    job_restore_interval_s: int = _setting(10, "JOB_RESTORE_INTERVAL_S", "Seconds between a worker's sweeps for messages of dead workers whose visibility timeout passed.")
    job_sweep_s: float = _setting(60.0, "JOB_SWEEP_S", "Seconds between sweeps re-sending jobs whose message was lost (still requested, or lease long expired); 0 = off.")
    job_lease_s: int = _setting(60, "JOB_LEASE_S", "Seconds a worker's claim on a job lasts without a heartbeat.")
    # -- imaging ----------------------------------------------------------------------------
    dicomweb_url: str = _setting("http://127.0.0.1:8042/dicom-web", "DICOMWEB_URL", "DICOMweb (QIDO/WADO/STOW) root of the PACS.")
    orthanc_url: str = _setting("http://127.0.0.1:8042", "ORTHANC_URL", "Orthanc REST API (stable-study hook and /changes catch-up).")
    orthanc_catch_up_s: float = _setting(60.0, "ORTHANC_CATCHUP_S", "Seconds between catch-ups of missed stable-study notifications from Orthanc /changes; 0 = off.")
    orthanc_user: str = _setting("", "ORTHANC_USER", "Orthanc user, if the PACS requires basic auth.")
    orthanc_password: str = _setting("", "ORTHANC_PASSWORD", "Orthanc password.")
    dosimetry_warm_grids: str = _setting("128x128x128@4.42,128x128x128@4.795", "DOSIMETRY_WARM_GRIDS", "Emission grids (KxJxI@S mm, comma separated) whose Y-90 kernel spectrum a dosimetry worker prepares at start; empty = none.")
    # -- radiobiology (voxel BED and EQD2; Dale 1985, Cremonesi 2008, Strigari 2010) ------------
    bed_tumour_alpha_beta_gy: float = _setting(10.0, "BED_TUMOUR_ALPHA_BETA_GY", "α/β (Gy) of tumour and lesion VOIs for the voxel BED.")
    bed_tumour_repair_h: float = _setting(1.5, "BED_TUMOUR_REPAIR_H", "Repair half-time (h) of tumour and lesion VOIs for the voxel BED.")
    bed_liver_alpha_beta_gy: float = _setting(2.5, "BED_LIVER_ALPHA_BETA_GY", "α/β (Gy) of liver and normal-liver VOIs for the voxel BED.")
    bed_liver_repair_h: float = _setting(2.5, "BED_LIVER_REPAIR_H", "Repair half-time (h) of liver and normal-liver VOIs for the voxel BED.")
    dosimetry_store_bed_map: bool = _setting(False, "DOSIMETRY_STORE_BED_MAP", "1 stores each voxel job's BED map in the PACS study beside its dose (RT Dose, DoseType EFFECTIVE).")
    # -- authentication ---------------------------------------------------------------------
    auth_mode: str = _setting("jwt", "AUTH_MODE", "off | jwt. 'off' only for local demo/serve on loopback (logged loudly).")
    auth_jwks_url: str = _setting("", "AUTH_JWKS_URL", "JWKS URL whose keys sign accepted tokens (RS256, RS384, ES384).")
    auth_issuer: str = _setting("", "AUTH_ISSUER", "Required 'iss' claim.")
    auth_audience: str = _setting("", "AUTH_AUDIENCE", "Required 'aud' claim.")
    allow_insecure_auth_off: bool = _setting(False, "ALLOW_INSECURE_AUTH_OFF", "1 lets AUTH_MODE=off start on a non-loopback GATEWAY_HOST (never in production).")
    auth_token_url: str = _setting("", "AUTH_TOKEN_URL", "Token endpoint of the issuer, published in /.well-known/smart-configuration.")
    auth_authorize_url: str = _setting("", "AUTH_AUTHORIZE_URL", "Authorization endpoint of the issuer, published in /.well-known/smart-configuration when set.")
    cds_clients: str = _setting("", "CDS_CLIENTS", "Trusted CDS clients (EHRs): a JSON list, or the path of a JSON file, of {\"iss\": ..., \"jwks_url\": ...}.")
    cds_fetch_timeout_s: float = _setting(10.0, "CDS_FETCH_TIMEOUT_S", "Timeout of each read from an EHR's fhirServer during a CDS Hooks call, seconds.")
    cors_allowed_origins: str = _setting("", "CORS_ALLOWED_ORIGINS", "Browser origins allowed to call the FHIR, CDS Hooks and page endpoints (comma-separated; empty = none).")
    app_client_id: str = _setting("", "APP_CLIENT_ID", "OAuth client id of the tumour-board page (a public client using PKCE).")
    app_session_secret: str = _setting("", "APP_SESSION_SECRET", "Secret signing the page's session cookie (same on every gateway process); empty = no SMART launch.")
    # -- limits -----------------------------------------------------------------------------
    max_body_bytes: int = _setting(10 * 1024 * 1024, "MAX_BODY_BYTES", "Largest accepted request body (413 above).")
    max_json_depth: int = _setting(64, "MAX_JSON_DEPTH", "Deepest accepted nesting of a JSON body, arrays and objects counted (400 above).")
    max_json_number_chars: int = _setting(64, "MAX_JSON_NUMBER_CHARS", "Most characters of one number in a JSON body (400 above; FHIR decimals have at most 18 significant digits).")
    max_url_chars: int = _setting(16384, "MAX_URL_CHARS", "Longest request line (method, path and query) gunicorn accepts; longer → 414 OperationOutcome.")
    max_header_chars: int = _setting(20480, "MAX_HEADER_CHARS", "Longest header line gunicorn accepts: room for a bearer token of 16,384 characters (longer tokens → 401); longer headers → 431 OperationOutcome.")
    rate_limit_per_minute: int = _setting(600, "RATE_LIMIT_PER_MINUTE", "Requests per minute per client (token or address); 0 = unlimited (429 above).")
    rate_limit_key_prefix: str = _setting("netliver:ratelimit:", "RATE_LIMIT_KEY_PREFIX", "Redis key prefix of the shared rate-limit counters (one per deployment).")
    # -- process ----------------------------------------------------------------------------
    log_level: str = _setting("INFO", "LOG_LEVEL", "Logging level.")
    log_format: str = _setting("json", "LOG_FORMAT", "json | text.")
    data_dir: str = _setting("var", "NETLIVER_DATA_DIR", "Folder for local state (SQLite file, logs, cursors).")
    extra: Mapping[str, str] = field(default_factory=dict, metadata={"env": "", "doc": ""})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from the environment (or ``environ``), then apply overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata.get("env")
            if not name or name not in env:
                continue
            raw = env[name]
            converters: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "bool": _parse_bool}
            conv = converters.get(str(f.type), str)
            try:
                values[f.name] = conv(raw)
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r}: {exc}") from exc
        values.update(overrides)
        settings = cls(**values)
        if settings.auth_mode not in {"off", "jwt"}:
            raise ValueError(f"AUTH_MODE must be off or jwt, not {settings.auth_mode!r}")
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def base_url(self) -> str:
        return (self.public_base_url or f"http://{self.gateway_host}:{self.gateway_port}").rstrip("/")

    @property
    def internal_gateway_url(self) -> str:
        return (self.gateway_internal_url or f"http://127.0.0.1:{self.gateway_port}").rstrip("/")

    @staticmethod
    def table() -> list[tuple[str, str, str]]:
        """(variable, default, doc) rows for the README."""
        rows = []
        for f in fields(Settings):
            if f.metadata.get("env"):
                rows.append((f.metadata["env"], str(f.default), f.metadata["doc"]))
        return rows


if __name__ == "__main__":  # pragma: no cover - documentation helper
    print("| variable | default | meaning |\n|---|---|---|")
    for env_name, default, doc in Settings.table():
        print(f"| `{env_name}` | `{default}` | {doc} |")
