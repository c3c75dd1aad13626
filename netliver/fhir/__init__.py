"""FHIR R4 helpers shared by every process (models pinned to R4B, see ``models``)."""
