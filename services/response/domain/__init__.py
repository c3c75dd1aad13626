"""Pure response domain: dataclasses and functions, no I/O and no FHIR (checked by import-linter)."""
