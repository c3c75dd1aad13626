"""SIRT activity planning: one entry point over the BSA, MIRD and partition methods.

:func:`plan_sirt` validates the inputs of the chosen method, computes the activity at treatment
time, every dose the method can predict, the lung dose (per treatment and cumulative), the
lung-shunt reduction, decay to calibration time, protocol warnings and the plan status:

- ``contraindicated``: lung shunt above 20 % (Cazzato et al., Cancers 13:6368 (2021), Table 1), predicted lung dose above
  the per-treatment limit, or cumulative lung dose above the cumulative limit (EANM 2022). The
  activity is still reported as computed, never silently capped.
- ``caution``: any other warning of severity ``caution``.
- ``ok``: otherwise.

Plausible ranges (:data:`PLAUSIBLE_RANGES`): the physical constants and the whole-liver volume
and BSA are refused (``DosimetryInputError`` naming the parameter) outside a range wide enough for
every published value, target and adult patient but narrow enough to catch a unit slip that would
otherwise give a silently wrong activity (C in mGy·kg/GBq, T½ in days, density in kg/m³, lung mass
in g, liver volume in L, doses in cGy). A result that overflows double precision is refused naming the input
that drives it, never answered as ``Infinity``.

Activity bookkeeping: ``activity_gbq`` is the activity to administer at treatment time; the
delivered activity is ``activity_gbq·(1 − R)`` with ``R`` the vial residual fraction (0 unless
given); every predicted dose uses the delivered activity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from services.dosimetry.domain.bsa import (
    bsa_activity_gbq,
    dubois_bsa_m2,
    mosteller_bsa_m2,
    tumor_involvement,
)
from services.dosimetry.domain.checks import require_fraction, require_positive
from services.dosimetry.domain.constants import (
    DEFAULT_DOSE_CONSTANT,
    DEFAULT_LUNG_MASS_KG,
    DEFAULT_TISSUE_DENSITY_G_PER_ML,
    DOSE_CONSTANTS,
    Y90_HALF_LIFE_EANM_2022_H,
    Y90_HALF_LIFE_H,
)
from services.dosimetry.domain.decay import activity_at_calibration_gbq, elapsed_h
from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.figures import beyond
from services.dosimetry.domain.lung import (
    CUMULATIVE_LUNG_LIMIT_GY,
    LSF_CONTRAINDICATION,
    LUNG_LIMIT_PER_TREATMENT_GY,
    lung_shunt_band,
)
from services.dosimetry.domain.mird import (
    mass_kg,
    single_compartment_activity_gbq,
    single_compartment_dose_gy,
)
from services.dosimetry.domain.partition import Lesion, partition_doses, solve_partition_activity
from services.dosimetry.domain.protocols import (
    PROTOCOLS,
    PlanWarning,
    ProtocolTargets,
    default_protocol_key,
    protocol_warnings,
)

__all__ = ["METHODS", "PLAUSIBLE_RANGES", "TI_MISMATCH_TOLERANCE", "PlanInputs", "SirtPlan", "plan_sirt"]

METHODS = ("bsa", "mird", "partition")
DEVICES = ("resin", "glass")

#: Largest difference between ``tumorInvolvement`` and V_tumour/V_liver (both given) that is not
#: reported: 5 percentage points (segmentation and rounding differences).
TI_MISMATCH_TOLERANCE = 0.05

#: Inclusive plausible range of inputs whose unit is easily slipped (see the module doc):
#: parameter -> (low, high).
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    # published C: 49.38 (AAPM) - 50 (TheraSphere) Gy·kg/GBq
    "dose_constant": (40.0, 60.0),
    # Y-90: 64.1 h (evaluated), 64.2 h (EANM 2022); 2.67 would be days
    "half_life_h": (60.0, 70.0),
    # soft tissue ≈ 1.03-1.06 g/mL; 1030 would be kg/m³
    "tissue_density_g_per_ml": (0.5, 2.0),
    # adult lungs ≈ 0.5-1.5 kg (default 1 kg); 1000 would be grams
    "lung_mass_kg": (0.1, 5.0),
    # whole liver, tumour included: adult ≈ 1-2 L, massive hepatomegaly ≤ ~15 L; 1.5 would be litres
    "liver_volume_ml": (100.0, 20000.0),
    # adults ≈ 1.3-2.6 m² (Mosteller 1987); 40 000 would be cm²; 5 m² bounds √(250·350/3600)
    "bsa_m2": (0.2, 5.0),
    # 1.8 would be metres (BSA 0.2 m², A = TI GBq), 80 000 grams
    "height_cm": (50.0, 250.0),
    "weight_kg": (10.0, 350.0),
    # published targets and limits are 30-1000 Gy (segmentectomy the highest); 12 000 would be cGy
    "target_dose_gy": (0.0, 2000.0),
    "normal_liver_limit_gy": (0.0, 2000.0),
}


@dataclass(frozen=True)
class PlanInputs:
    """Inputs of :func:`plan_sirt`; names follow the contract's ``$sirt-activity`` parameters."""

    method: str
    device: str | None = None
    height_cm: float | None = None
    weight_kg: float | None = None
    bsa_m2: float | None = None
    #: The resin BSA method is defined with DuBois (SIR-Spheres instructions for use:
    #: 0.20247·H[m]^0.725·W^0.425), so it is the default; Mosteller is a setting.
    bsa_formula: str = "dubois"
    tumor_involvement: float | None = None
    liver_volume_ml: float | None = None
    tumor_volume_ml: float | None = None
    perfused_fraction: float = 1.0
    lung_shunt_fraction: float | None = None
    tumor_to_normal_ratio: float | None = None
    target_dose_gy: float | None = None
    normal_liver_limit_gy: float | None = None
    lung_limit_gy: float = LUNG_LIMIT_PER_TREATMENT_GY
    cumulative_lung_limit_gy: float = CUMULATIVE_LUNG_LIMIT_GY
    prior_lung_dose_gy: float = 0.0
    lung_mass_kg: float = DEFAULT_LUNG_MASS_KG
    tissue_density_g_per_ml: float = DEFAULT_TISSUE_DENSITY_G_PER_ML
    calibration_time: datetime | None = None
    treatment_time: datetime | None = None
    dose_constant: float = DEFAULT_DOSE_CONSTANT.value_gy_kg_per_gbq
    half_life_h: float = Y90_HALF_LIFE_H
    vial_residual_fraction: float = 0.0
    protocol: str | ProtocolTargets | None = None
    compromised_liver: bool = False
    prior_prrt: bool = False
    #: Extra lesions (volume mL, T/N) for the multi-compartment partition model; when given,
    #: ``tumor_volume_ml``/``tumor_to_normal_ratio`` describe the first lesion and these the rest.
    extra_lesions: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class SirtPlan:
    """Result of :func:`plan_sirt` (activities in GBq, doses in Gy, fractions 0-1)."""

    method: str
    device: str
    activity_gbq: float
    activity_at_calibration_gbq: float | None
    tumor_dose_gy: float | None
    normal_liver_dose_gy: float | None
    perfused_liver_dose_gy: float | None
    lung_dose_gy: float
    cumulative_lung_dose_gy: float
    lesion_doses_gy: tuple[float, ...]
    dose_constant: float
    limiting_factor: str
    lsf_reduction: float
    status: str
    warnings: tuple[PlanWarning, ...]
    protocol: ProtocolTargets
    bsa_m2: float | None = None
    tumor_involvement: float | None = None
    elapsed_h: float | None = None
    half_life_h: float = Y90_HALF_LIFE_H
    candidates_gbq: dict[str, float] = field(default_factory=dict)


def _fraction(value: float | None, name: str, *, positive: bool = False, below_one: bool = False) -> None:
    if value is not None:
        require_fraction(name, value, positive=positive, below_one=below_one)


def _positive(value: float | None, name: str, *, allow_zero: bool = False) -> None:
    if value is not None:
        require_positive(name, value, allow_zero=allow_zero)


#: The input that drives the activity for each limiting factor (named when a result overflows).
_ACTIVITY_DRIVER = {"bsa": "bsa_m2", "mird": "target_dose_gy", "tumor-target": "target_dose_gy",
                    "normal-liver-limit": "normal_liver_limit_gy", "lung-limit": "lung_limit_gy"}


def _finite(value: float, name: str, what: str) -> None:
    if not math.isfinite(value):
        raise DosimetryInputError(name, f"{what} is not a finite number with this value")


def _require(value: float | None, name: str, method: str) -> float:
    if value is None:
        raise DosimetryInputError(name, f"required for method {method!r}")
    return value


def _validate(p: PlanInputs) -> tuple[str, ProtocolTargets]:
    if p.method not in METHODS:
        raise DosimetryInputError("method", f"unknown method {p.method!r}; expected one of {', '.join(METHODS)}")
    device = p.device
    if device is None:
        if p.method != "bsa":
            raise DosimetryInputError("device", f"device (resin or glass) is required for method {p.method!r}")
        device = "resin"
    if device not in DEVICES:
        raise DosimetryInputError("device", f"unknown device {device!r}; expected resin or glass")
    if p.method == "bsa" and device != "resin":
        raise DosimetryInputError("device", "the BSA method applies to resin microspheres only")
    _fraction(p.tumor_involvement, "tumor_involvement")
    _fraction(p.lung_shunt_fraction, "lung_shunt_fraction", below_one=True)
    _fraction(p.perfused_fraction, "perfused_fraction", positive=True)
    _fraction(p.vial_residual_fraction, "vial_residual_fraction", below_one=True)
    for name, value in (("height_cm", p.height_cm), ("weight_kg", p.weight_kg), ("bsa_m2", p.bsa_m2),
                        ("liver_volume_ml", p.liver_volume_ml), ("tumor_to_normal_ratio", p.tumor_to_normal_ratio),
                        ("target_dose_gy", p.target_dose_gy), ("normal_liver_limit_gy", p.normal_liver_limit_gy),
                        ("lung_limit_gy", p.lung_limit_gy), ("cumulative_lung_limit_gy", p.cumulative_lung_limit_gy),
                        ("lung_mass_kg", p.lung_mass_kg), ("tissue_density_g_per_ml", p.tissue_density_g_per_ml),
                        ("dose_constant", p.dose_constant), ("half_life_h", p.half_life_h)):
        _positive(value, name)
    for name, value in (("dose_constant", p.dose_constant), ("half_life_h", p.half_life_h),
                        ("tissue_density_g_per_ml", p.tissue_density_g_per_ml), ("lung_mass_kg", p.lung_mass_kg),
                        ("liver_volume_ml", p.liver_volume_ml), ("bsa_m2", p.bsa_m2),
                        ("height_cm", p.height_cm), ("weight_kg", p.weight_kg),
                        ("target_dose_gy", p.target_dose_gy), ("normal_liver_limit_gy", p.normal_liver_limit_gy)):
        low, high = PLAUSIBLE_RANGES[name]
        if value is not None and not low <= value <= high:
            raise DosimetryInputError(name, f"{value:g} is outside the plausible range {low:g}-{high:g} "
                                            "(check the unit)")
    _positive(p.prior_lung_dose_gy, "prior_lung_dose_gy", allow_zero=True)
    _positive(p.tumor_volume_ml, "tumor_volume_ml", allow_zero=p.method == "bsa")
    if p.tumor_volume_ml is not None and p.liver_volume_ml is not None and p.tumor_volume_ml > p.liver_volume_ml:
        raise DosimetryInputError("tumor_volume_ml", f"tumour volume {p.tumor_volume_ml} mL is larger than the "
                                                   f"liver volume {p.liver_volume_ml} mL (tumour included)")
    for volume_ml, tn in p.extra_lesions:
        _positive(volume_ml, "extra_lesions.volume_ml")
        _positive(tn, "extra_lesions.tumor_to_normal_ratio")
    if p.bsa_formula not in ("mosteller", "dubois"):
        raise DosimetryInputError("bsa_formula", f"unknown BSA formula {p.bsa_formula!r}; expected mosteller or dubois")
    if isinstance(p.protocol, ProtocolTargets):
        protocol = p.protocol
    else:
        key = p.protocol or default_protocol_key(device)
        if key not in PROTOCOLS:
            raise DosimetryInputError("protocol", f"unknown protocol {key!r}; known: {', '.join(PROTOCOLS)}")
        protocol = PROTOCOLS[key]
    return device, protocol


def _lesions(p: PlanInputs, tumor_volume_ml: float, tn: float) -> list[Lesion]:
    rho = p.tissue_density_g_per_ml
    lesions = [Lesion(mass_kg(tumor_volume_ml, rho, "tumor_volume_ml"), tn)]
    lesions.extend(Lesion(mass_kg(v, rho, "extra_lesions.volume_ml"), t) for v, t in p.extra_lesions)
    return lesions


def _normal_perfused_mass_kg(p: PlanInputs, liver_volume_ml: float, tumor_volume_ml: float) -> float:
    """Perfused normal liver: perfusedFraction·V_liver minus every tumour volume (all tumour is
    assumed inside the perfused territory)."""
    tumour_total = tumor_volume_ml + sum(v for v, _ in p.extra_lesions)
    normal_ml = p.perfused_fraction * liver_volume_ml - tumour_total
    if normal_ml <= 0:
        raise DosimetryInputError("tumor_volume_ml", f"tumour volume {tumour_total} mL leaves no normal liver in the "
                                                   f"perfused volume {p.perfused_fraction * liver_volume_ml} mL")
    return mass_kg(normal_ml, p.tissue_density_g_per_ml)


def _version_notes(p: PlanInputs, activity: float, lung_dose: float, hours: float | None) -> list[PlanWarning]:
    """Where sources disagree, the other named versions as ``version`` notes: the
    other dose constants (activity ∝ 1/C for dose-targeted methods; doses ∝ C for BSA) and the
    other Y-90 half-life for the activity at calibration."""
    c = p.dose_constant
    others = [k for k in DOSE_CONSTANTS.values() if k.value_gy_kg_per_gbq != c]
    if p.method == "bsa":
        parts = [f"C = {k.value_gy_kg_per_gbq:g} ({k.source}): lung dose {lung_dose * k.value_gy_kg_per_gbq / c:.2f} Gy"
                 for k in others]
    else:
        parts = [f"C = {k.value_gy_kg_per_gbq:g} ({k.source}): {activity * c / k.value_gy_kg_per_gbq:.4f} GBq"
                 for k in others]
    notes = [PlanWarning("dose-constant-versions", f"computed with C = {c:g} Gy·kg/GBq; with " + "; ".join(parts),
                         "version")]
    if hours is not None:
        other = Y90_HALF_LIFE_EANM_2022_H if p.half_life_h != Y90_HALF_LIFE_EANM_2022_H else Y90_HALF_LIFE_H
        notes.append(PlanWarning("half-life-versions", f"activity at calibration computed with T½ = "
                                 f"{p.half_life_h:g} h; with {other:g} h it is "
                                 f"{activity_at_calibration_gbq(activity, hours, other):.4f} GBq", "version"))
    return notes


@dataclass(frozen=True)
class _Activity:
    """The prescribed activity of one method and what determined it."""

    activity_gbq: float
    limiting: str
    bsa_m2: float | None = None
    tumor_involvement: float | None = None
    lsf_reduction: float = 0.0
    candidates_gbq: dict[str, float] = field(default_factory=dict)


def _bsa_activity(p: PlanInputs, lsf: float, warnings: list[PlanWarning]) -> _Activity:
    """Resin BSA method: A = BSA − 0.2 + TI, times the perfused share, reduced by the shunt band."""
    lsf_reduction = 0.0
    other_bsa_note: tuple[str, float] | None = None
    if p.bsa_m2 is not None:
        bsa = p.bsa_m2
    else:
        height = _require(p.height_cm, "height_cm", "bsa (or give bsaM2)")
        weight = _require(p.weight_kg, "weight_kg", "bsa (or give bsaM2)")
        bsa = dubois_bsa_m2(height, weight) if p.bsa_formula == "dubois" else mosteller_bsa_m2(height, weight)
        other_name = "Mosteller" if p.bsa_formula == "dubois" else "DuBois"
        other_bsa = (mosteller_bsa_m2(height, weight) if p.bsa_formula == "dubois"
                     else dubois_bsa_m2(height, weight))
        other_bsa_note = (other_name, other_bsa)
    if p.tumor_involvement is not None:
        ti = p.tumor_involvement
        if p.tumor_volume_ml is not None and p.liver_volume_ml is not None:
            from_volumes = tumor_involvement(p.tumor_volume_ml, p.liver_volume_ml)
            if abs(ti - from_volumes) > TI_MISMATCH_TOLERANCE + 1e-9:
                warnings.append(PlanWarning(
                    "tumor-involvement-mismatch", f"tumorInvolvement {ti:.1%} differs from tumorVolumeMl/"
                    f"liverVolumeMl = {from_volumes:.1%} by more than {TI_MISMATCH_TOLERANCE:.0%}; "
                    "tumorInvolvement was used: check both"))
    elif p.tumor_volume_ml is not None and p.liver_volume_ml is not None:
        ti = tumor_involvement(p.tumor_volume_ml, p.liver_volume_ml)
    else:
        raise DosimetryInputError("tumor_involvement", "the BSA method needs tumorInvolvement "
                                                      "(or tumorVolumeMl and liverVolumeMl)")
    base = bsa_activity_gbq(bsa, ti, p.perfused_fraction)
    band = lung_shunt_band(lsf)
    if not band.contraindicated:
        lsf_reduction = band.reduction
    if lsf_reduction > 0:
        warnings.append(PlanWarning(f"lsf-band/{band.label}",
                                    f"lung shunt {lsf:.1%}: BSA activity reduced by {lsf_reduction:.0%} "
                                    "(SIR-Spheres instructions for use)"))
    if other_bsa_note is not None:
        other_name, other_bsa = other_bsa_note
        other_activity = bsa_activity_gbq(other_bsa, ti, p.perfused_fraction) * (1.0 - lsf_reduction)
        used = "DuBois, the device's formula" if p.bsa_formula == "dubois" else "Mosteller"
        warnings.append(PlanWarning(
            "bsa-formula-versions", f"BSA {bsa:.3f} m² by {used}; {other_name} gives "
            f"{other_bsa:.3f} m² and {other_activity:.4f} GBq", "version"))
    return _Activity(base * (1.0 - lsf_reduction), "bsa", bsa, ti, lsf_reduction)


def _partition_activity(p: PlanInputs, lsf: float, keep: float, warnings: list[PlanWarning]) -> _Activity:
    """Partition model: the activity meeting the tumour target within the normal-liver and lung limits."""
    liver = _require(p.liver_volume_ml, "liver_volume_ml", "partition")
    tumor = _require(p.tumor_volume_ml, "tumor_volume_ml", "partition")
    tn = _require(p.tumor_to_normal_ratio, "tumor_to_normal_ratio", "partition")
    if p.target_dose_gy is None and p.normal_liver_limit_gy is None:
        raise DosimetryInputError("target_dose_gy", "the partition model needs targetDoseGy (tumour) "
                                                  "or normalLiverLimitGy")
    lung_available = min(p.lung_limit_gy, p.cumulative_lung_limit_gy - p.prior_lung_dose_gy)
    solution = solve_partition_activity(
        lesions=_lesions(p, tumor, tn), normal_mass_kg=_normal_perfused_mass_kg(p, liver, tumor),
        lung_shunt_fraction=lsf, dose_constant_gy_kg_per_gbq=p.dose_constant, lung_mass_kg=p.lung_mass_kg,
        tumor_target_gy=p.target_dose_gy, normal_liver_limit_gy=p.normal_liver_limit_gy,
        lung_limit_gy=lung_available if lung_available > 0 else None)
    activity = solution.doses.activity_gbq / keep
    limiting = solution.limiting_factor
    candidates = {k: v / keep for k, v in solution.candidates_gbq.items()}
    if p.target_dose_gy is not None and limiting != "tumor-target":
        warnings.append(PlanWarning(
            f"partition/{limiting}",
            f"the tumour target {p.target_dose_gy:g} Gy needs {candidates['tumor-target']:.3f} GBq; "
            f"the {limiting.replace('-', ' ')} allows {activity:.3f} GBq"))
    return _Activity(activity, limiting, candidates_gbq=candidates)


@dataclass(frozen=True)
class _Doses:
    perfused_gy: float | None
    tumor_gy: float | None
    normal_gy: float | None
    lesions_gy: tuple[float, ...]


def _predicted_doses(p: PlanInputs, delivered: float, lsf: float, warnings: list[PlanWarning]) -> _Doses:
    """Perfused-liver dose (MIRD) and, when the compartments are known, tumour and normal-liver doses."""
    c = p.dose_constant
    perfused_dose: float | None = None
    tumor_dose: float | None = None
    normal_dose: float | None = None
    lesion_doses: tuple[float, ...] = ()
    if p.liver_volume_ml is not None:
        perfused_mass = mass_kg(p.liver_volume_ml * p.perfused_fraction, p.tissue_density_g_per_ml)
        perfused_dose = single_compartment_dose_gy(delivered, perfused_mass, lsf, 0.0, c)
    if (p.liver_volume_ml is not None and p.tumor_volume_ml is not None and p.tumor_volume_ml > 0
            and p.tumor_to_normal_ratio is not None):
        try:
            doses = partition_doses(delivered, _lesions(p, p.tumor_volume_ml, p.tumor_to_normal_ratio),
                                    _normal_perfused_mass_kg(p, p.liver_volume_ml, p.tumor_volume_ml),
                                    lsf, c, p.lung_mass_kg)
        except DosimetryInputError as err:
            if p.method == "partition":
                raise
            # BSA/MIRD do not need the compartments; say why no tumour dose is predicted
            warnings.append(PlanWarning("no-partition-prediction", f"tumour and normal-liver doses not "
                                        f"predicted: {err.message}", "info"))
        else:
            normal_dose, lesion_doses = doses.normal_liver_gy, doses.tumor_gy
            tumor_dose = lesion_doses[0]
    return _Doses(perfused_dose, tumor_dose, normal_dose, lesion_doses)


def _safety_warnings(p: PlanInputs, device: str, protocol: ProtocolTargets, lsf: float, lung_dose: float,
                     cumulative: float, doses: _Doses) -> list[PlanWarning]:
    """Contraindications (shunt, lung dose), protocol targets missed, and the patient's risk flags."""
    warnings: list[PlanWarning] = []
    if lsf > LSF_CONTRAINDICATION:
        # Cazzato 2021 Table 1 and the SIR-Spheres label give the 20 % rule for resin; the glass label limits the lung
        # dose only. The $sirt-activity contract applies the rule to every device: a glass plan says so.
        scope = ("" if device == "resin" else "; resin rule applied to glass microspheres too, whose label "
                 "limits the lung dose only")
        shown = beyond(100 * lsf, 100 * LSF_CONTRAINDICATION)
        warnings.append(PlanWarning("lung-shunt-above-20", f"lung shunt {shown} % is above 20 %: SIRT is "
                                    "contraindicated (Cazzato 2021 Table 1; SIR-Spheres instructions for use"
                                    f"{scope})", "contraindication"))
    tolerance = 1e-9
    if lung_dose > p.lung_limit_gy * (1 + tolerance):
        warnings.append(PlanWarning("lung-dose-per-treatment", f"predicted lung dose "
                                    f"{beyond(lung_dose, p.lung_limit_gy)} Gy exceeds "
                                    f"the limit {p.lung_limit_gy:g} Gy per treatment (EANM 2022)",
                                    "contraindication"))
    if cumulative > p.cumulative_lung_limit_gy * (1 + tolerance):
        warnings.append(PlanWarning("lung-dose-cumulative", f"cumulative lung dose "
                                    f"{beyond(cumulative, p.cumulative_lung_limit_gy)} Gy "
                                    f"(prior {p.prior_lung_dose_gy:g} Gy) exceeds {p.cumulative_lung_limit_gy:g} Gy "
                                    "(EANM 2022)", "contraindication"))
    warnings.extend(protocol_warnings(protocol, tumor_gy=min(doses.lesions_gy) if doses.lesions_gy else None,
                                      normal_liver_gy=doses.normal_gy,
                                      perfused_liver_gy=doses.perfused_gy if protocol.perfused_min_gy else None,
                                      compromised_liver=p.compromised_liver))
    if p.prior_prrt:
        warnings.append(PlanWarning("prior-prrt", "prior PRRT: higher risk of radioembolisation-induced liver "
                                    "disease; consider the compromised-liver limit (EANM 2022)"))
    if p.compromised_liver and p.method != "partition":
        warnings.append(PlanWarning("compromised-liver", "pretreated or compromised liver: normal-liver limit "
                                    "< 30 Gy applies (EANM 2022)", "info"))
    return warnings


def _decay(p: PlanInputs, activity: float, warnings: list[PlanWarning]) -> tuple[float | None, float | None]:
    """The activity to order at the calibration time, and the hours from calibration to treatment."""
    at_calibration: float | None = None
    hours: float | None = None
    if p.calibration_time is not None and p.treatment_time is not None:
        hours = elapsed_h(p.calibration_time, p.treatment_time)
        at_calibration = activity_at_calibration_gbq(activity, hours, p.half_life_h)
        if hours < 0:
            warnings.append(PlanWarning("treatment-before-calibration", f"treatment {-hours:.1f} h before the "
                                        f"calibration time: the vial holds more than its calibrated activity; "
                                        f"order {at_calibration:.4f} GBq at calibration (check the two times are "
                                        "not swapped)", "info"))
    elif p.calibration_time is not None or p.treatment_time is not None:
        warnings.append(PlanWarning("decay-incomplete", "give both calibrationTime and treatmentTime for decay "
                                    "correction; the activity is at treatment time", "info"))
    return at_calibration, hours


def plan_sirt(p: PlanInputs) -> SirtPlan:
    """Plan one SIRT treatment (see the module doc for status rules and formulas' sources)."""
    device, protocol = _validate(p)
    lsf = _require(p.lung_shunt_fraction, "lung_shunt_fraction", p.method)
    c = p.dose_constant
    keep = 1.0 - p.vial_residual_fraction
    warnings: list[PlanWarning] = []
    if p.method == "bsa":
        chosen = _bsa_activity(p, lsf, warnings)
    elif p.method == "mird":
        target = _require(p.target_dose_gy, "target_dose_gy", "mird")
        liver = _require(p.liver_volume_ml, "liver_volume_ml", "mird")
        perfused_mass = mass_kg(liver * p.perfused_fraction, p.tissue_density_g_per_ml)
        chosen = _Activity(single_compartment_activity_gbq(target, perfused_mass, lsf, p.vial_residual_fraction, c),
                           "mird")
    else:
        chosen = _partition_activity(p, lsf, keep, warnings)
    activity, limiting = chosen.activity_gbq, chosen.limiting

    delivered = activity * keep
    doses = _predicted_doses(p, delivered, lsf, warnings)
    lung_dose = c * delivered * lsf / p.lung_mass_kg
    cumulative = p.prior_lung_dose_gy + lung_dose
    _finite(activity, _ACTIVITY_DRIVER[limiting], "the activity")
    for dose in doses.lesions_gy:
        _finite(dose, "tumor_to_normal_ratio", "the tumour dose")
    _finite(lung_dose, _ACTIVITY_DRIVER[limiting], "the lung dose")
    _finite(cumulative, "prior_lung_dose_gy", "the cumulative lung dose")

    warnings.extend(_safety_warnings(p, device, protocol, lsf, lung_dose, cumulative, doses))
    at_calibration, hours = _decay(p, activity, warnings)
    warnings.extend(_version_notes(p, activity, lung_dose, hours))

    severities = {w.severity for w in warnings}
    status = "contraindicated" if "contraindication" in severities else "caution" if "caution" in severities else "ok"
    return SirtPlan(
        method=p.method, device=device, activity_gbq=activity, activity_at_calibration_gbq=at_calibration,
        tumor_dose_gy=doses.tumor_gy, normal_liver_dose_gy=doses.normal_gy, perfused_liver_dose_gy=doses.perfused_gy,
        lung_dose_gy=lung_dose, cumulative_lung_dose_gy=cumulative, lesion_doses_gy=doses.lesions_gy,
        dose_constant=c, limiting_factor=limiting, lsf_reduction=chosen.lsf_reduction, status=status,
        warnings=tuple(warnings), protocol=protocol, bsa_m2=chosen.bsa_m2, tumor_involvement=chosen.tumor_involvement,
        elapsed_h=hours, half_life_h=p.half_life_h, candidates_gbq=dict(chosen.candidates_gbq))
