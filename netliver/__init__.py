"""Shared library of the netliver services: FHIR models and builders, code systems,
OperationOutcome errors, settings, structured logging, the upstream FHIR client and the
Flask app base every process is built on."""

__version__ = "0.1.0"
