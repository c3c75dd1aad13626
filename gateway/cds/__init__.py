"""CDS Hooks 2.0 service of the gateway: discovery, ``patient-view`` cards, feedback, and the
authentication of CDS clients (EHRs)."""

from gateway.cds.views import SERVICE_ID, create_cds_blueprint, discovery

__all__ = ["SERVICE_ID", "create_cds_blueprint", "discovery"]
