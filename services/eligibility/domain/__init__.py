"""Pure eligibility domain: dataclasses and functions, no I/O and no FHIR (checked by import-linter).

``facts`` (inputs, newest value, staleness), ``logic`` (three-valued truth), ``rules`` (the
rule vocabulary and its evaluation), ``geometry`` (ablation zones), ``evaluation`` (status per
therapy), ``imaging`` (imaging advice).
"""
