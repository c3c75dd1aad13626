"""Protocol dose targets as configurable, versioned objects that produce warnings.

Defaults (EANM 2022 unless named):

- ``eanm-2022-resin``: EANM 2022 radioembolisation dosimetry guideline (Weber et al., EJNMMI
  49:1682, 2022), resin spheres: tumour > 100-120 Gy, normal liver < 40 Gy (< 30 Gy when the
  liver is pretreated or compromised), lung ≤ 30 Gy per treatment and ≤ 50 Gy cumulative.
- ``eanm-2022-resin-segmentectomy``: the same with a perfused (segment) target > 150 Gy.
- ``eanm-2022-glass``: glass spheres: tumour ≥ 205 Gy (HCC), normal liver < 75 Gy.
- ``net-100-150``: neuroendocrine liver metastases, tumour 100-150 Gy (Cazzato et al., Cancers 13:6368 (2021), citing
  ref. 60), normal liver < 40 Gy.

Callers may build their own :class:`ProtocolTargets` and pass it to :func:`protocol_warnings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.dosimetry.domain.figures import beyond

__all__ = ["PROTOCOLS", "PlanWarning", "ProtocolTargets", "default_protocol_key", "protocol_warnings"]


@dataclass(frozen=True)
class PlanWarning:
    """One rule that fired: ``severity`` is ``info`` (no effect on the status), ``caution`` or
    ``contraindication``; ``version`` marks a note giving the result under another source's
    constant (no effect on the status; answered as ``note``, not ``warning``)."""

    rule_id: str
    text: str
    severity: str = "caution"

    def __str__(self) -> str:
        return f"[{self.rule_id}] {self.text}"


@dataclass(frozen=True)
class ProtocolTargets:
    """Dose targets and limits of one protocol (Gy). ``None`` means the protocol sets none."""

    key: str
    title: str
    version: str
    source: str
    tumor_min_gy: float | None
    tumor_max_gy: float | None
    normal_liver_max_gy: float | None
    normal_liver_max_compromised_gy: float | None
    perfused_min_gy: float | None = None

    @property
    def policy_uri(self) -> str:
        return f"https://netliver.org/fhir/policy/protocol/{self.key}?version={self.version}"


_EANM = "EANM 2022 radioembolisation dosimetry guideline (Weber et al. 2022)"

PROTOCOLS: dict[str, ProtocolTargets] = {
    p.key: p for p in (
        ProtocolTargets("eanm-2022-resin", "EANM 2022, resin microspheres", "2022", _EANM,
                        tumor_min_gy=100.0, tumor_max_gy=None, normal_liver_max_gy=40.0,
                        normal_liver_max_compromised_gy=30.0),
        ProtocolTargets("eanm-2022-resin-segmentectomy", "EANM 2022, resin, radiation segmentectomy", "2022",
                        _EANM, tumor_min_gy=None, tumor_max_gy=None, normal_liver_max_gy=None,
                        normal_liver_max_compromised_gy=None, perfused_min_gy=150.0),
        ProtocolTargets("eanm-2022-glass", "EANM 2022, glass microspheres (HCC)", "2022", _EANM,
                        tumor_min_gy=205.0, tumor_max_gy=None, normal_liver_max_gy=75.0,
                        normal_liver_max_compromised_gy=None),
        ProtocolTargets("net-100-150", "Neuroendocrine liver metastases, tumour 100-150 Gy", "2021",
                        "Cazzato et al., Cancers 13:6368 (2021), ref. 60", tumor_min_gy=100.0,
                        tumor_max_gy=150.0, normal_liver_max_gy=40.0, normal_liver_max_compromised_gy=30.0),
    )
}


def default_protocol_key(device: str) -> str:
    """EANM 2022 targets of the device (``resin`` or ``glass``)."""
    return "eanm-2022-glass" if device == "glass" else "eanm-2022-resin"


def protocol_warnings(protocol: ProtocolTargets, *, tumor_gy: float | None = None,
                      normal_liver_gy: float | None = None, perfused_liver_gy: float | None = None,
                      compromised_liver: bool = False) -> list[PlanWarning]:
    """Warnings for predicted doses outside the protocol's targets (each names rule and source).

    Comparisons: a tumour dose strictly below the minimum warns; a dose strictly above a maximum
    warns; a dose equal to a bound does not.
    """
    out: list[PlanWarning] = []
    tag = f"{protocol.key} ({protocol.source})"
    if tumor_gy is not None and protocol.tumor_min_gy is not None and tumor_gy < protocol.tumor_min_gy:
        out.append(PlanWarning(f"{protocol.key}/tumor-min",
                               f"predicted tumour dose {beyond(tumor_gy, protocol.tumor_min_gy)} Gy is below the target "
                               f"{protocol.tumor_min_gy:g} Gy of {tag}"))
    if tumor_gy is not None and protocol.tumor_max_gy is not None and tumor_gy > protocol.tumor_max_gy:
        out.append(PlanWarning(f"{protocol.key}/tumor-max",
                               f"predicted tumour dose {beyond(tumor_gy, protocol.tumor_max_gy)} Gy is above the range "
                               f"ceiling {protocol.tumor_max_gy:g} Gy of {tag}", "info"))
    limit = protocol.normal_liver_max_gy
    rule = "normal-liver-max"
    if compromised_liver and protocol.normal_liver_max_compromised_gy is not None:
        limit, rule = protocol.normal_liver_max_compromised_gy, "normal-liver-max-compromised"
    if normal_liver_gy is not None and limit is not None and normal_liver_gy > limit:
        out.append(PlanWarning(f"{protocol.key}/{rule}",
                               f"predicted normal-liver dose {beyond(normal_liver_gy, limit)} Gy exceeds "
                               f"{limit:g} Gy of {tag}"))
    if (perfused_liver_gy is not None and protocol.perfused_min_gy is not None
            and perfused_liver_gy < protocol.perfused_min_gy):
        out.append(PlanWarning(f"{protocol.key}/perfused-min",
                               f"predicted perfused-volume dose {beyond(perfused_liver_gy, protocol.perfused_min_gy)} Gy is below "
                               f"{protocol.perfused_min_gy:g} Gy of {tag}"))
    return out
