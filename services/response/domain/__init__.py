"""Pure response domain: dataclasses and functions, no I/O and no FHIR (checked by import-linter).

Modules: ``model`` (measurements), ``series`` (baseline checks, lesion timeline), one module per
criterion (``recist``, ``mrecist``, ``easl``, ``choi``, ``percist``, ``irecist``), ``tables``
(RECIST 1.1 Tables 1-2), ``bor`` (best overall response), ``biochemical`` (tumour markers),
``ctcae`` (laboratory toxicity grades), ``criteria`` (entry point).
"""
