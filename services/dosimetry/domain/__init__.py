"""Pure dosimetry domain: dataclasses and functions, no I/O and no FHIR (checked by import-linter).

Planning: :mod:`.constants` (versioned dose constants, Y-90 half-lives), :mod:`.bsa`,
:mod:`.mird`, :mod:`.partition`, :mod:`.lung`, :mod:`.decay`, :mod:`.protocols`, and
:mod:`.planning` (``plan_sirt``, the entry point of ``$sirt-activity``).

Voxel engine: :mod:`.voxel` (``ldm_dose_gy``, ``kernel_dose_gy``), :mod:`.kernel` (voxel S-value
kernels, interpolation for other voxel sizes), :mod:`.dvh` (``dvh_metrics``). Kernel tables are
loaded by :mod:`services.dosimetry.kernel_tables`. Every unusable input raises
:class:`.errors.DosimetryInputError` naming the parameter. See docs/dosimetry.md.
"""
