"""gunicorn configuration of every netliver web process (``gunicorn -c python:netliver.serving.gunicorn_conf``).

* Request line and header limits follow the settings (``MAX_URL_CHARS``, ``MAX_HEADER_CHARS``):
  gunicorn caps ``limit_request_line`` at 8,190 unless it is 0, so it is set to 0 (gunicorn's own
  ceiling is then 1 MiB) and the app answers longer URLs than ``MAX_URL_CHARS`` with a 414
  OperationOutcome (:mod:`netliver.edge`). A header line may be ``MAX_HEADER_CHARS`` long, room
  for the documented bearer tokens of 16,384 characters (a longer token is refused by the
  gateway with 401).
* Errors gunicorn answers itself (malformed request, header too large) are OperationOutcomes
  (:class:`netliver.serving.worker.FhirErrorWorker`), never its HTML page.
* The access log has the path without the query string and no referer: search parameters carry
  patient identifiers, names and birth dates.
"""

from __future__ import annotations

from netliver.settings import Settings

_settings = Settings.from_env()

worker_class = "netliver.serving.worker.FhirErrorWorker"
limit_request_line = 0
limit_request_field_size = _settings.max_header_chars
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
